//! Opted-in subjects' affect over time (fusion's RecordAffect): one row per analysis,
//! its `AffectPoint` as protobuf, found by tenant and subject. Forgetting a subject and
//! the retention delete these rows with the feedback. The SQL is the same in both
//! dialects.

use anyhow::Context;
use empathy_proto::v1::{AffectPoint, SubjectAffect};
use prost::Message;

use super::FeedbackStore;
use super::tenants::AnalysisRow;

/// Most points one read returns: the newest, about ten a day for three years.
pub const MAX_READ: i64 = 10_000;

pub(super) const INSERT_AFFECT: &str = "INSERT INTO affect (analysis_id, tenant, subject_id, \
     analyzed_unix_ms, point) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (analysis_id) DO NOTHING";
/// `$1` tenant, `$2` subject, `$3` since, `$4` limit: newest first.
pub(super) const READ_AFFECT: &str = "SELECT analysis_id, point FROM affect WHERE tenant = $1 \
     AND subject_id = $2 AND analyzed_unix_ms >= $3 ORDER BY analyzed_unix_ms DESC LIMIT $4";

impl FeedbackStore {
    /// Stores the points (an analysis already stored is kept); how many were new.
    pub fn record_affect(&self, affect: &SubjectAffect) -> anyhow::Result<u64> {
        let rows: Vec<AnalysisRow> = affect
            .points
            .iter()
            .map(|p| AnalysisRow {
                analysis_id: p.analysis_id.clone(),
                tenant: affect.tenant.clone(),
                subject_id: affect.subject_id.clone(),
                unix_ms: p.analyzed_unix_ms,
                bytes: p.encode_to_vec(),
            })
            .collect();
        self.backend.insert_affect(&rows)
    }

    /// The subject's points analysed at or after `since_unix_ms`, oldest first (the
    /// newest `MAX_READ` if there are more).
    pub fn read_affect(
        &self,
        tenant: &str,
        subject_id: &str,
        since_unix_ms: i64,
    ) -> anyhow::Result<Vec<AffectPoint>> {
        let rows = self
            .backend
            .read_affect(tenant, subject_id, since_unix_ms, MAX_READ)?;
        rows.into_iter()
            .rev()
            .map(|(id, bytes)| {
                AffectPoint::decode(bytes.as_slice())
                    .with_context(|| format!("affect point {id}: corrupt"))
            })
            .collect()
    }
}
