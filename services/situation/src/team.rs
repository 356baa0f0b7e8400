//! Parallel loops for a decoding step, run by compute threads that spin between them.
//!
//! One sequence's decoding step is about 150 parallel loops of tens of microseconds
//! each. With rayon's parallel iterators the other thread went to sleep between two
//! loops and each loop woke it with a futex call: about 15% of the step was that
//! sleeping and waking, and two threads ran a step only 1.5x faster than one. A team
//! lives for one step: its helpers are rayon jobs that spin until the next loop (or the
//! end of the step), as llama.cpp's threads do between the ops of a graph.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use anyhow::{Result, bail};

/// One parallel loop: `tasks` calls of `body`, claimed by whoever comes first.
struct Loop {
    body: &'static (dyn Fn(usize) + Sync),
    tasks: usize,
    next: AtomicUsize,
    done: AtomicUsize,
    panicked: AtomicBool,
}

impl Loop {
    /// Claims and runs tasks until none is left.
    fn work(&self) {
        loop {
            let task = self.next.fetch_add(1, Ordering::Relaxed);
            if task >= self.tasks {
                return;
            }
            if catch_unwind(AssertUnwindSafe(|| (self.body)(task))).is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

/// The loops of one step, shared by the caller and its helpers.
pub struct Team {
    /// The loop being run, if any. Helpers take it (and count themselves in `active`)
    /// under this lock, so once the caller has taken it away no helper can start on it.
    current: Mutex<Option<&'static Loop>>,
    /// Helpers that hold the current loop.
    active: AtomicUsize,
    /// Bumped for every loop, so that helpers notice one without taking the lock.
    generation: AtomicUsize,
    finished: AtomicBool,
}

impl Team {
    /// Runs `f` on this thread with a team of this rayon pool's other threads.
    pub fn with<R: Send>(f: impl FnOnce(&Team) -> R + Send) -> R {
        let team = Team {
            current: Mutex::new(None),
            active: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            finished: AtomicBool::new(false),
        };
        rayon::scope(|s| {
            for _ in 1..rayon::current_num_threads() {
                s.spawn(|_| team.help());
            }
            // Helpers stop once this is set, also when `f` panics.
            struct Finish<'a>(&'a AtomicBool);
            impl Drop for Finish<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Release);
                }
            }
            let _finish = Finish(&team.finished);
            f(&team)
        })
    }

    /// `body(item)` for every item, spread over the team.
    pub fn for_each<T: Send>(&self, items: Vec<T>, body: impl Fn(T) + Sync) -> Result<()> {
        let items: Vec<Mutex<Option<T>>> = items.into_iter().map(|i| Mutex::new(Some(i))).collect();
        self.run(items.len(), &|i| {
            let item = items[i].lock().ok().and_then(|mut slot| slot.take());
            if let Some(item) = item {
                body(item);
            }
        })
    }

    /// `body(i)` for i in 0..tasks, spread over the team; returns once all are done.
    fn run(&self, tasks: usize, body: &(dyn Fn(usize) + Sync)) -> Result<()> {
        if tasks == 0 {
            return Ok(());
        }
        // SAFETY: the loop (and `body` through it) is only reached through `current`,
        // and this function takes it away and waits until no helper holds it before
        // returning, so neither is used after this frame ends.
        let body: &'static (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(body) };
        let job = Loop {
            body,
            tasks,
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
        };
        // SAFETY: as above, `job` outlives every use of this reference.
        let shared: &'static Loop = unsafe { &*(&job as *const Loop) };
        *self.lock() = Some(shared);
        self.generation.fetch_add(1, Ordering::Release);
        job.work();
        while job.done.load(Ordering::Acquire) < tasks {
            std::hint::spin_loop();
        }
        *self.lock() = None;
        while self.active.load(Ordering::Acquire) > 0 {
            std::hint::spin_loop();
        }
        if job.panicked.load(Ordering::Relaxed) {
            bail!("a compute task panicked");
        }
        Ok(())
    }

    /// A helper: runs the loops it finds until the step is over.
    fn help(&self) {
        let mut seen = 0;
        let mut idle = 0u32;
        loop {
            if self.finished.load(Ordering::Acquire) {
                return;
            }
            let generation = self.generation.load(Ordering::Acquire);
            if generation == seen {
                // Spin, but let another thread run now and then in case this one
                // holds a core the caller needs.
                idle = idle.wrapping_add(1);
                if idle.is_multiple_of(4096) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            seen = generation;
            let job = {
                let current = self.lock();
                if current.is_some() {
                    self.active.fetch_add(1, Ordering::AcqRel);
                }
                *current
            };
            if let Some(job) = job {
                job.work();
                self.active.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<&'static Loop>> {
        // Nothing runs under this lock that can panic, but a poisoned one is still fine.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_once() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| {
            Team::with(|team| {
                for n in [0usize, 1, 2, 7, 100] {
                    let mut out = vec![0usize; n];
                    let items: Vec<(usize, &mut usize)> = out.iter_mut().enumerate().collect();
                    team.for_each(items, |(i, slot)| *slot += i + 1).unwrap();
                    assert_eq!(out, (1..=n).collect::<Vec<_>>());
                }
            })
        });
    }

    #[test]
    fn a_panicking_task_is_an_error_not_a_hang() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let result = pool.install(|| {
            Team::with(|team| {
                team.for_each((0..8).collect(), |i: i32| {
                    assert!(i != 5, "task 5 fails");
                })
            })
        });
        assert!(result.is_err());
    }
}
