//! What the store keeps per tenant (issue 13): which feedback each tenant's line has
//! been trained on (`meta` key `trained_through/<tenant>`), whether its automatic
//! training is paused, and fusion's bounded sample of its analyses (`traffic`). The
//! SQL is the same in both dialects.

use std::collections::BTreeMap;

use anyhow::Context;
use empathy_proto::v1::TrafficSample;
use prost::Message;

use super::{FeedbackStore, Pause, now_ms};

/// Records not yet trained on, per tenant (tenants with none are absent).
pub type Pending = BTreeMap<String, u64>;

/// Pending records per tenant: quarantined ones never will be trained on.
pub(super) const PENDING: &str = "SELECT tenant, COUNT(*) FROM feedback f WHERE quarantined = 0 \
     AND seq > COALESCE((SELECT value FROM meta WHERE key = 'trained_through/' || f.tenant), 0) \
     GROUP BY tenant";

/// The `meta` key of a tenant's trained-through mark.
pub(super) fn trained_through_key(tenant: &str) -> String {
    format!("trained_through/{tenant}")
}

pub(super) const SET_PAUSE: &str = "INSERT INTO tenant_pause (tenant, reason, since_unix_ms) \
     VALUES ($1, $2, $3) ON CONFLICT (tenant) DO UPDATE SET reason = excluded.reason, \
     since_unix_ms = excluded.since_unix_ms";
pub(super) const CLEAR_PAUSE: &str = "DELETE FROM tenant_pause WHERE tenant = $1";
pub(super) const GET_PAUSE: &str =
    "SELECT reason, since_unix_ms FROM tenant_pause WHERE tenant = $1";

/// Samples kept per tenant: the newest. Enough to measure agreement on a few thousand
/// analyses, small enough (about 2 KB each) that a tenant costs at most ~10 MB.
pub const TRAFFIC_KEEP: i64 = 4000;

pub(super) const INSERT_TRAFFIC: &str = "INSERT INTO traffic (analysis_id, tenant, subject_id, \
     received_unix_ms, sample) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (analysis_id) DO NOTHING";
/// Keeps a tenant's newest `$2` samples.
pub(super) const TRIM_TRAFFIC: &str = "DELETE FROM traffic WHERE tenant = $1 AND analysis_id NOT IN \
     (SELECT analysis_id FROM traffic WHERE tenant = $1 \
      ORDER BY received_unix_ms DESC, analysis_id DESC LIMIT $2)";
pub(super) const READ_TRAFFIC: &str = "SELECT analysis_id, sample FROM traffic WHERE tenant = $1 \
     ORDER BY received_unix_ms DESC, analysis_id DESC LIMIT $2";

/// A row of a table keyed by analysis (`traffic`, `affect`): its columns and the
/// protobuf (a TrafficSample or an AffectPoint).
pub(super) struct AnalysisRow {
    pub analysis_id: String,
    pub tenant: String,
    pub subject_id: String,
    /// When it was received (traffic) or analysed (affect).
    pub unix_ms: i64,
    pub bytes: Vec<u8>,
}

impl AnalysisRow {
    fn of(sample: &TrafficSample) -> AnalysisRow {
        AnalysisRow {
            analysis_id: sample.analysis_id.clone(),
            tenant: sample.tenant.clone(),
            subject_id: sample.subject_id.clone(),
            unix_ms: if sample.received_unix_ms > 0 {
                sample.received_unix_ms
            } else {
                now_ms()
            },
            bytes: sample.encode_to_vec(),
        }
    }
}

impl FeedbackStore {
    /// Stores `samples` (checked by the caller), keeping each tenant's newest
    /// `TRAFFIC_KEEP`; returns how many were new.
    pub fn store_traffic(&self, samples: &[TrafficSample]) -> anyhow::Result<u64> {
        let rows: Vec<AnalysisRow> = samples.iter().map(AnalysisRow::of).collect();
        self.backend.store_traffic(&rows, TRAFFIC_KEEP)
    }

    /// `tenant`'s newest samples, at most `limit`.
    pub fn traffic(&self, tenant: &str, limit: usize) -> anyhow::Result<Vec<TrafficSample>> {
        let rows = self.backend.read_traffic(tenant, limit as i64)?;
        rows.into_iter()
            .map(|(id, bytes)| {
                TrafficSample::decode(bytes.as_slice())
                    .with_context(|| format!("traffic sample {id}: corrupt"))
            })
            .collect()
    }

    /// Pauses `tenant`'s automatic training until `resume`, durably.
    pub fn set_pause(&self, tenant: &str, reason: &str) -> anyhow::Result<()> {
        let pause = Pause {
            reason: reason.to_string(),
            since_unix_ms: now_ms(),
        };
        self.backend.set_pause(tenant, Some(&pause))
    }

    pub fn resume(&self, tenant: &str) -> anyhow::Result<()> {
        self.backend.set_pause(tenant, None)
    }

    /// Why `tenant`'s automatic training is paused, or None.
    pub fn pause(&self, tenant: &str) -> anyhow::Result<Option<Pause>> {
        self.backend.pause(tenant)
    }
}
