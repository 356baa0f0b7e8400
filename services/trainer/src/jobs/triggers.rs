//! What starts work without a request: training when enough feedback is pending or
//! on a timer, and deleting feedback past its retention.

use std::sync::Arc;
use std::time::Duration;

use super::Trainer;

impl Trainer {
    /// Starts jobs when `after` new records are pending (0 = never) and every
    /// `every` if any are pending (None = never).
    pub fn spawn_triggers(self: &Arc<Self>, after: u64, every: Option<Duration>) {
        if after > 0 {
            let this = Arc::clone(self);
            let mut pending = self.store.pending();
            tokio::spawn(async move {
                while pending.changed().await.is_ok() {
                    let n = *pending.borrow_and_update();
                    if n >= after && !this.running() {
                        let reason = format!("{n} new feedback records (--train-after {after})");
                        if let Err(e) = this.start_automatic(&reason) {
                            tracing::debug!("not training: {}", e.message());
                        }
                    }
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
                    let n = *this.store.pending().borrow();
                    if n > 0 && !this.running() {
                        let reason = format!("timer: {n} new feedback records");
                        if let Err(e) = this.start_automatic(&reason) {
                            tracing::info!("not training: {}", e.message());
                        }
                    }
                }
            });
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
