//! What starts work without a request: training when enough feedback is pending or
//! on a timer, and deleting feedback past its retention.

use std::sync::Arc;
use std::time::Duration;

use super::Trainer;
use crate::store::Pending;

impl Trainer {
    /// Starts a job for the tenant with the most pending records when it has `after`
    /// (0 = never), and every `every` if any tenant has any (None = never). One job
    /// runs at a time; the next trigger picks the next tenant, whose records are then
    /// the most pending. Paused tenants are skipped, so one never starves the rest.
    pub fn spawn_triggers(self: &Arc<Self>, after: u64, every: Option<Duration>) {
        if after > 0 {
            let this = Arc::clone(self);
            let mut pending = self.store.pending();
            tokio::spawn(async move {
                while pending.changed().await.is_ok() {
                    let counts = pending.borrow_and_update().clone();
                    this.start_first(&counts, after, &|n| {
                        format!("{n} new feedback records (--train-after {after})")
                    });
                }
            });
        }
        if let Some(every) = every {
            let this = Arc::clone(self);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if this.running() {
                        continue;
                    }
                    let store = this.store.clone();
                    match tokio::task::spawn_blocking(move || store.refresh_pending()).await {
                        Ok(Ok(counts)) => {
                            this.start_first(&counts, 1, &|n| {
                                format!("timer: {n} new feedback records")
                            });
                        }
                        Ok(Err(e)) => tracing::warn!("cannot count pending feedback: {e:#}"),
                        Err(e) => tracing::warn!("the pending count failed: {e}"),
                    }
                }
            });
        }
    }

    /// Starts a job for the first tenant, most pending first, that has at least
    /// `least` pending records and is not paused; none while a job runs.
    fn start_first(self: &Arc<Self>, counts: &Pending, least: u64, reason: &dyn Fn(u64) -> String) {
        let mut due: Vec<(&String, &u64)> = counts.iter().filter(|(_, n)| **n >= least).collect();
        due.sort_by(|a, b| b.1.cmp(a.1));
        for (tenant, n) in due {
            if self.running() {
                return;
            }
            match self.start_automatic(tenant, &reason(*n)) {
                Ok(_) => return,
                Err(e) => tracing::info!(tenant = %tenant, "not training: {}", e.message()),
            }
        }
    }

    /// Deletes feedback older than `retain`, now and then every `retain / 4` (between
    /// a second and an hour), logging how many records went.
    pub fn spawn_retention(self: &Arc<Self>, retain: Duration) {
        let this = Arc::clone(self);
        let period = (retain / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let store = this.store.clone();
                let deleted =
                    tokio::task::spawn_blocking(move || store.delete_older_than(retain)).await;
                match deleted {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => {
                        tracing::info!(
                            deleted = n,
                            "retention: deleted feedback older than {retain:?}"
                        )
                    }
                    Ok(Err(e)) => tracing::error!("retention: cannot delete old feedback: {e:#}"),
                    Err(e) => tracing::error!("retention: the delete task failed: {e}"),
                }
            }
        });
    }
}
