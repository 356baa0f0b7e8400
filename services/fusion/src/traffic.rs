//! Fusion's sample of its analyses for the trainer (`SubmitTraffic`, issue 13): a
//! tenant line's candidate is checked against the tenant's real traffic so that it
//! does not flip its answers wholesale. A fraction of analyses (`--traffic-sample`)
//! is queued, features only, and sent in batches of 64, or every few seconds. The
//! queue is bounded and drops its oldest while the trainer is down: an analysis never
//! waits for the trainer, nor fails because of it.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use empathy_proto::v1::{TrafficBatch, TrafficSample};
use tokio::sync::Notify;
use tonic::{Code, Status};

use crate::trainer_link::TrainerLink;

/// Samples per SubmitTraffic call (the trainer takes up to 1024).
const BATCH: usize = 64;
/// Samples queued at most (about 1.7 KB each): what a trainer outage may hold back.
const QUEUE_MAX: usize = 1024;
/// A partial batch waits at most this long.
const FLUSH_EVERY: Duration = Duration::from_secs(5);

pub struct Traffic {
    /// The share of analyses sampled, in (0, 1].
    fraction: f32,
    queue: Mutex<VecDeque<TrafficSample>>,
    /// A full batch is waiting.
    ready: Notify,
    /// Samples dropped because the queue was full.
    dropped: AtomicU64,
}

/// With `fraction` > 0, a sample of analyses that a task sends to `trainer`.
pub fn spawn(trainer: TrainerLink, fraction: f32) -> Option<Arc<Traffic>> {
    let traffic = Traffic::new(fraction)?;
    let sender = Arc::clone(&traffic);
    tokio::spawn(sender.run(move |batch| {
        let trainer = trainer.clone();
        async move { trainer.submit_traffic(batch).await }
    }));
    Some(traffic)
}

impl Traffic {
    /// The sample, not yet sending (`spawn` starts that); None for a fraction of 0.
    pub fn new(fraction: f32) -> Option<Arc<Traffic>> {
        (fraction > 0.0).then(|| {
            Arc::new(Traffic {
                fraction: fraction.min(1.0),
                queue: Mutex::new(VecDeque::new()),
                ready: Notify::new(),
                dropped: AtomicU64::new(0),
            })
        })
    }

    /// Queues the analysis `sample` builds, if it is drawn (`sample` is only called
    /// then: the features are copied for the sampled share alone). The trainer needs
    /// text features: an analysis without them (an image alone) is not sent.
    pub fn offer(&self, sample: impl FnOnce() -> TrafficSample) {
        if !self.drawn() {
            return;
        }
        let sample = sample();
        if !sample.features.contains_key("text") {
            return;
        }
        let mut queue = self.lock();
        queue.push_back(sample);
        self.bound(&mut queue);
        if queue.len() >= BATCH {
            self.ready.notify_one();
        }
    }

    /// Drops the queued samples of `subject_id` (the trainer's Forget removes those
    /// it already has).
    pub fn forget(&self, subject_id: &str) {
        self.lock().retain(|s| s.subject_id != subject_id);
    }

    /// A random draw (v4 UUIDs carry 122 random bits; 24 of them here).
    fn drawn(&self) -> bool {
        let bits = uuid::Uuid::new_v4().as_u64_pair().0 >> 40;
        (bits as f32) / ((1u64 << 24) as f32) < self.fraction
    }

    /// What is queued, oldest first.
    #[cfg(test)]
    pub fn queued(&self) -> Vec<TrafficSample> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<TrafficSample>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops the oldest beyond QUEUE_MAX.
    fn bound(&self, queue: &mut VecDeque<TrafficSample>) {
        let excess = queue.len().saturating_sub(QUEUE_MAX);
        if excess > 0 {
            queue.drain(..excess);
            self.dropped.fetch_add(excess as u64, Ordering::Relaxed);
        }
    }

    fn next_batch(&self) -> Vec<TrafficSample> {
        let mut queue = self.lock();
        let n = queue.len().min(BATCH);
        queue.drain(..n).collect()
    }

    /// A batch the trainer did not take goes back to the front, to be sent first.
    fn put_back(&self, batch: Vec<TrafficSample>) {
        let mut queue = self.lock();
        for sample in batch.into_iter().rev() {
            queue.push_front(sample);
        }
        self.bound(&mut queue);
    }

    /// Sends every full batch and the rest; stops at the first failure, keeping the
    /// batch. A batch the trainer refuses as invalid is dropped: sent again, it
    /// would be refused again.
    async fn flush<F, Fut>(&self, send: &mut F) -> Result<(), Status>
    where
        F: FnMut(TrafficBatch) -> Fut,
        Fut: Future<Output = Result<u64, Status>>,
    {
        loop {
            let samples = self.next_batch();
            if samples.is_empty() {
                return Ok(());
            }
            let n = samples.len();
            match send(TrafficBatch {
                samples: samples.clone(),
            })
            .await
            {
                Ok(_) => {}
                Err(s) if s.code() == Code::InvalidArgument => {
                    tracing::warn!(
                        n,
                        reason = s.message(),
                        "the trainer refused traffic samples"
                    );
                }
                Err(s) => {
                    self.put_back(samples);
                    return Err(s);
                }
            }
        }
    }

    /// Sends batches through `send` for as long as the process runs: when a batch is
    /// full, or every FLUSH_EVERY. Logs when sending starts failing and when it
    /// works again, not at every try.
    async fn run<F, Fut>(self: Arc<Self>, mut send: F)
    where
        F: FnMut(TrafficBatch) -> Fut,
        Fut: Future<Output = Result<u64, Status>>,
    {
        let mut failing = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep(FLUSH_EVERY) => {}
                () = self.ready.notified() => {}
            }
            match self.flush(&mut send).await {
                Err(s) if !failing => {
                    failing = true;
                    tracing::warn!(
                        code = ?s.code(),
                        reason = s.message(),
                        "traffic samples not sent to the trainer; kept (at most {QUEUE_MAX}, \
                         the oldest dropped) and retried"
                    );
                }
                Ok(()) if failing => {
                    failing = false;
                    let dropped = self.dropped.swap(0, Ordering::Relaxed);
                    tracing::info!(dropped, "traffic samples reach the trainer again");
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use empathy_proto::v1::FloatVector;

    use super::*;

    fn sample(i: usize) -> TrafficSample {
        TrafficSample {
            analysis_id: format!("a{i}"),
            tenant: "acme".into(),
            subject_id: format!("s{}", i % 2),
            features: [
                ("text".to_string(), FloatVector { values: vec![0.1] }),
                ("lexicon".to_string(), FloatVector { values: vec![0.2] }),
            ]
            .into(),
            ..TrafficSample::default()
        }
    }

    fn queued(t: &Traffic) -> Vec<String> {
        t.queued().into_iter().map(|s| s.analysis_id).collect()
    }

    fn everything() -> Arc<Traffic> {
        Traffic::new(1.0).unwrap_or_else(|| panic!("a sample of 1 is on"))
    }

    #[test]
    fn a_share_of_analyses_is_drawn_and_only_those_are_copied() {
        assert!(Traffic::new(0.0).is_none(), "0 turns it off");
        let Some(fifth) = Traffic::new(0.2) else {
            panic!("on");
        };
        let built = AtomicUsize::new(0);
        for i in 0..10_000 {
            fifth.offer(|| {
                built.fetch_add(1, Ordering::Relaxed);
                sample(i)
            });
        }
        let built = built.load(Ordering::Relaxed);
        assert!((1_700..2_300).contains(&built), "{built} of 10000 drawn");
        assert_eq!(fifth.lock().len(), built.min(QUEUE_MAX));
    }

    #[test]
    fn an_analysis_without_text_features_is_not_queued_and_a_subject_is_forgotten() {
        let t = everything();
        t.offer(|| TrafficSample {
            features: Default::default(),
            ..sample(0)
        });
        assert!(queued(&t).is_empty());
        for i in 0..4 {
            t.offer(|| sample(i));
        }
        t.forget("s1");
        assert_eq!(queued(&t), ["a0", "a2"]);
    }

    #[tokio::test]
    async fn batches_of_64_and_the_rest_kept_when_the_trainer_is_down() {
        let t = everything();
        for i in 0..150 {
            t.offer(|| sample(i));
        }
        let mut sizes = Vec::new();
        let mut ok = |b: TrafficBatch| {
            sizes.push(b.samples.len());
            async { Ok(0) }
        };
        assert!(t.flush(&mut ok).await.is_ok());
        assert_eq!(sizes, [64, 64, 22]);

        // Down: nothing lost but the oldest beyond the bound, the order kept.
        for i in 0..QUEUE_MAX + 10 {
            t.offer(|| sample(i));
        }
        let mut down = |_| async { Err(Status::unavailable("trainer down")) };
        assert!(t.flush(&mut down).await.is_err());
        let ids = queued(&t);
        assert_eq!(ids.len(), QUEUE_MAX);
        assert_eq!(ids.first().map(String::as_str), Some("a10"));
        assert_eq!(t.dropped.load(Ordering::Relaxed), 10);

        // A batch the trainer calls invalid is dropped, not retried forever.
        let mut refuse = |_| async { Err(Status::invalid_argument("bad sample")) };
        assert!(t.flush(&mut refuse).await.is_ok());
        assert!(queued(&t).is_empty());
    }

    #[tokio::test]
    async fn a_full_batch_is_sent_without_waiting_for_the_timer() {
        let t = everything();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(Arc::clone(&t).run(move |b: TrafficBatch| {
            let _ = tx.send(b.samples.len());
            async { Ok(0) }
        }));
        for i in 0..BATCH {
            t.offer(|| sample(i));
        }
        let sent = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await;
        assert_eq!(sent.ok().flatten(), Some(BATCH));
    }
}
