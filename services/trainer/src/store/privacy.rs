//! What the store does for privacy and against poisoning: purging or quarantining
//! feedback by filter, forgetting a subject, and retention by age (the durable pause
//! of a tenant's automatic training after a rollback is in `tenants`).

use std::time::Duration;

use anyhow::bail;
use empathy_proto::v1::FeedbackFilter;

use super::{FeedbackStore, now_ms};

/// What `forget` removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forgotten {
    pub deleted: u64,
    /// Versions published by jobs that read at least one of the deleted records.
    pub trained_into: Vec<String>,
    /// Points of the subject's affect trajectory.
    pub affect: u64,
}

/// Why automatic training is paused, and since when.
#[derive(Debug, Clone, PartialEq)]
pub struct Pause {
    pub reason: String,
    pub since_unix_ms: i64,
}

/// The WHERE clause of a purge, the same in both dialects: `$1`..`$6` are the filter's
/// tenant, key_id, from, to, model_version and subject_id; an unset field (empty or
/// 0) matches every row. (SQLite reads `$N` as a named parameter numbered by first
/// appearance, which is N here.)
pub(super) const FILTER: &str = "(CAST($1 AS TEXT) = '' OR tenant = $1) \
     AND (CAST($2 AS TEXT) = '' OR key_id = $2) \
     AND (CAST($3 AS BIGINT) = 0 OR received_unix_ms >= $3) \
     AND (CAST($4 AS BIGINT) = 0 OR received_unix_ms < $4) \
     AND (CAST($5 AS TEXT) = '' OR model_version = $5) \
     AND (CAST($6 AS TEXT) = '' OR subject_id = $6)";

/// Versions that read a record at or above `$1` (the lowest seq being deleted).
pub(super) const TRAINED_INTO: &str = "SELECT DISTINCT published FROM jobs WHERE state = 'PUBLISHED' \
     AND published <> '' AND through_seq >= $1 ORDER BY published";

/// Whether a filter sets at least one field (an empty one would match everything).
pub fn filter_is_empty(f: &FeedbackFilter) -> bool {
    f.tenant.is_empty()
        && f.key_id.is_empty()
        && f.from_unix_ms == 0
        && f.to_unix_ms == 0
        && f.model_version.is_empty()
        && f.subject_id.is_empty()
}

impl FeedbackStore {
    /// Quarantines (`delete` false: kept, never trained on) or deletes the records
    /// `filter` matches; returns how many matched. An empty filter is an error.
    pub fn purge(&self, filter: &FeedbackFilter, delete: bool) -> anyhow::Result<u64> {
        if filter_is_empty(filter) {
            bail!("an empty filter would match every record; set at least one field");
        }
        self.backend.purge(filter, delete)
    }

    /// Deletes every stored record of `subject`.
    pub fn forget(&self, subject: &str) -> anyhow::Result<Forgotten> {
        if subject.is_empty() {
            bail!("no subject id");
        }
        self.backend.forget(subject)
    }

    /// Deletes the records received more than `age` ago (the retention).
    pub fn delete_older_than(&self, age: Duration) -> anyhow::Result<u64> {
        let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        self.backend
            .delete_older_than(now_ms().saturating_sub(age_ms))
    }
}

#[cfg(test)]
pub(super) mod tests;
