//! A bounded pool of reusable states (Whisper's decoding states). A caller waits for a
//! free one and holds it in a [`Lease`] that puts it back on drop, also when the caller
//! panics: a panic costs one request, never a state (with the pool handing states out
//! by hand, two panics left speech waiting forever).

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, PoisonError};

pub struct Pool<T> {
    idle: Mutex<Vec<T>>,
    returned: Condvar,
}

impl<T> Pool<T> {
    pub fn new(items: Vec<T>) -> Self {
        Self {
            idle: Mutex::new(items),
            returned: Condvar::new(),
        }
    }

    /// A free item, waiting for one if all are in use.
    pub fn take(&self) -> Lease<'_, T> {
        // The lock is never held while an item is used, so a poisoned lock only means a
        // panic between two lines of this file: the list itself is intact.
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(item) = idle.pop() {
                return Lease {
                    pool: self,
                    item: Some(item),
                };
            }
            idle = self
                .returned
                .wait(idle)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// An item out of its pool; back in the pool when dropped.
pub struct Lease<'a, T> {
    pool: &'a Pool<T>,
    /// Always `Some` until `drop`.
    item: Option<T>,
}

impl<T> Deref for Lease<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        match &self.item {
            Some(item) => item,
            None => unreachable!("a lease holds its item until it is dropped"),
        }
    }
}

impl<T> DerefMut for Lease<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.item {
            Some(item) => item,
            None => unreachable!("a lease holds its item until it is dropped"),
        }
    }
}

impl<T> Drop for Lease<'_, T> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            let mut idle = self
                .pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            idle.push(item);
            self.pool.returned.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::{Arc, mpsc};
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_panic_while_holding_a_state_gives_it_back() {
        let pool = Arc::new(Pool::new(vec![1, 2]));
        for _ in 0..3 {
            let panicked = catch_unwind(AssertUnwindSafe(|| {
                let mut state = pool.take();
                *state += 10;
                panic!("Whisper failed mid-clip");
            }));
            assert!(panicked.is_err());
        }
        // Both states are still there (taking them would wait forever otherwise).
        let (tx, rx) = mpsc::channel();
        let shared = Arc::clone(&pool);
        std::thread::spawn(move || {
            let (a, b) = (shared.take(), shared.take());
            let _ = tx.send(*a + *b);
        });
        let sum = rx.recv_timeout(Duration::from_secs(5));
        assert_eq!(
            sum,
            Ok(1 + 2 + 30),
            "both states come back, as the holder left them"
        );
    }

    #[test]
    fn a_taker_waits_for_a_state_to_come_back() {
        let pool = Arc::new(Pool::new(vec!["state"]));
        let held = pool.take();
        let (tx, rx) = mpsc::channel();
        let shared = Arc::clone(&pool);
        std::thread::spawn(move || {
            let _ = tx.send(*shared.take());
        });
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err(), "waits");
        drop(held);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok("state"));
    }
}
