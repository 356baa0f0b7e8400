//! How many meaning-reader readings run at once. About half of a reading is work on
//! one thread (attention, norms, the step from one layer to the next) between the
//! matrix products that use every core, so a second reading beside it keeps the
//! cores busy (README, "What it costs": about 1.1x the texts a second through the
//! service on 2 cores).

use std::{sync::Arc, time::Duration};

use tokio::sync::Semaphore;

pub struct ReaderTurns {
    /// A reading holds its turn until it ends, even when its caller gave up waiting,
    /// so readings past their deadline never pile up on the CPU.
    turns: Arc<Semaphore>,
}

impl ReaderTurns {
    /// At most `at_once` readings at a time (at least one).
    pub fn new(at_once: usize) -> Self {
        Self {
            turns: Arc::new(Semaphore::new(at_once.max(1))),
        }
    }

    /// Runs `work` on a blocking thread in its turn; an error in words when the turn
    /// and the work did not both end within `deadline`.
    pub async fn run<T: Send + 'static>(
        &self,
        deadline: Duration,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        tokio::time::timeout(deadline, async {
            let turn = Arc::clone(&self.turns)
                .acquire_owned()
                .await
                .map_err(|e| e.to_string())?;
            tokio::task::spawn_blocking(move || {
                let answer = work();
                drop(turn);
                answer
            })
            .await
            .map_err(|e| format!("the meaning reader failed: {e}"))
        })
        .await
        .map_err(|_| format!("the meaning reader did not answer within {deadline:?}"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    /// Whether each of two pieces of work saw the other running beside it (each
    /// waits up to a second for that: long enough for a loaded machine to start both).
    async fn met(turns: &ReaderTurns) -> Vec<bool> {
        let running = Arc::new(AtomicUsize::new(0));
        let work = |running: Arc<AtomicUsize>| {
            move || {
                running.fetch_add(1, Ordering::SeqCst);
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(1) {
                    if running.load(Ordering::SeqCst) == 2 {
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                running.fetch_sub(1, Ordering::SeqCst);
                false
            }
        };
        let wait = Duration::from_secs(10);
        let (a, b) = tokio::join!(
            turns.run(wait, work(Arc::clone(&running))),
            turns.run(wait, work(Arc::clone(&running))),
        );
        vec![a.unwrap(), b.unwrap()]
    }

    #[tokio::test]
    async fn two_turns_run_two_readings_at_once() {
        assert_eq!(met(&ReaderTurns::new(2)).await, [true, true]);
    }

    #[tokio::test]
    async fn one_turn_runs_them_one_after_the_other() {
        assert_eq!(met(&ReaderTurns::new(1)).await, [false, false]);
    }

    #[tokio::test]
    async fn a_reading_past_the_deadline_is_an_error_in_words() {
        let turns = ReaderTurns::new(1);
        let late = turns
            .run(Duration::from_millis(20), || {
                std::thread::sleep(Duration::from_millis(200))
            })
            .await;
        let why = late.expect_err("past its deadline");
        assert!(why.contains("did not answer within 20ms"), "{why}");
    }
}
