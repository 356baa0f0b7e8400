//! How busy one modality's plugin is, and how long a request joining now would wait.
//!
//! A plugin call costs a fixed part (for a text model, reading its weights once per
//! call) plus a part per input, so a call of 40 inputs costs far less than 40 calls of
//! one: counting queued inputs at the cost of a lone input refused requests that an
//! idle encoder would have answered in one call. The two parts are fitted from the
//! calls the plugin made lately.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

/// Inputs waiting or running, and what calls have cost lately.
pub struct Load {
    /// Inputs of the call running now (0 when idle).
    running: AtomicUsize,
    /// Inputs accepted but not yet in a running call.
    waiting: AtomicUsize,
    /// Inputs merged into one call at most.
    max_inputs: usize,
    cost: Mutex<CallCost>,
}

impl Load {
    pub fn new(max_inputs: usize) -> Self {
        Self {
            running: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            max_inputs: max_inputs.max(1),
            cost: Mutex::new(CallCost::default()),
        }
    }

    /// The time until the work ahead of a request joining now is done: the running
    /// call, and the full calls queued before the one it will be merged into. Its own
    /// call is not counted, so an idle encoder admits any request, however slow.
    pub fn wait_ahead(&self) -> Duration {
        let cost = self.cost.lock().unwrap_or_else(|p| p.into_inner());
        let running = self.running.load(Ordering::Relaxed);
        let full_calls = self.waiting.load(Ordering::Relaxed) / self.max_inputs;
        let secs = cost.call_secs(running) + full_calls as f64 * cost.call_secs(self.max_inputs);
        Duration::from_secs_f64(secs)
    }

    pub fn accepted(&self, inputs: usize) {
        self.waiting.fetch_add(inputs, Ordering::Relaxed);
    }

    /// Undoes `accepted` for a request that could not be queued.
    pub fn withdrawn(&self, inputs: usize) {
        self.waiting.fetch_sub(inputs, Ordering::Relaxed);
    }

    pub fn started(&self, inputs: usize) {
        self.waiting.fetch_sub(inputs, Ordering::Relaxed);
        self.running.store(inputs, Ordering::Relaxed);
    }

    /// A call ended; `ran` of its inputs were still wanted and took `took`.
    pub fn finished(&self, ran: usize, took: Duration) {
        self.running.store(0, Ordering::Relaxed);
        if ran > 0 {
            let mut cost = self.cost.lock().unwrap_or_else(|p| p.into_inner());
            cost.observe(ran as f64, took.as_secs_f64());
        }
    }
}

/// A least-squares fit of seconds = fixed + per_input × inputs over recent calls,
/// older calls weighing less (the machine's load changes).
#[derive(Default)]
struct CallCost {
    weight: f64,
    n: f64,
    nn: f64,
    t: f64,
    nt: f64,
}

impl CallCost {
    /// Each new call keeps 90% of the weight of those before it.
    const DECAY: f64 = 0.9;

    fn observe(&mut self, n: f64, t: f64) {
        let d = Self::DECAY;
        self.weight = d * self.weight + 1.0;
        self.n = d * self.n + n;
        self.nn = d * self.nn + n * n;
        self.t = d * self.t + t;
        self.nt = d * self.nt + n * t;
    }

    /// The expected seconds of a call of `inputs` (0 until a call was measured).
    fn call_secs(&self, inputs: usize) -> f64 {
        if inputs == 0 || self.n == 0.0 {
            return 0.0;
        }
        let (fixed, per_input) = self.fit();
        fixed + per_input * inputs as f64
    }

    fn fit(&self) -> (f64, f64) {
        let spread = self.weight * self.nn - self.n * self.n;
        // Calls of (nearly) one size say nothing about how the cost grows: charge it
        // all per input, which overstates a larger call rather than understating it.
        if spread <= 1e-9 * self.n * self.n {
            return (0.0, self.t / self.n);
        }
        let per_input = ((self.weight * self.nt - self.n * self.t) / spread).max(0.0);
        let fixed = ((self.t - per_input * self.n) / self.weight).max(0.0);
        (fixed, per_input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn nothing_measured_or_nothing_ahead_admits() {
        let load = Load::new(64);
        load.accepted(500);
        assert_eq!(load.wait_ahead(), Duration::ZERO, "nothing measured yet");
        let idle = Load::new(64);
        idle.finished(10, 200 * MS);
        assert_eq!(idle.wait_ahead(), Duration::ZERO, "nothing queued");
    }

    #[test]
    fn a_request_that_fits_the_next_call_waits_only_for_the_running_one() {
        let load = Load::new(64);
        load.started(1);
        load.finished(1, 25 * MS); // only lone inputs seen: 25 ms each
        load.accepted(5);
        load.started(5);
        load.accepted(39);
        let wait = load.wait_ahead().as_secs_f64();
        assert!((wait - 0.125).abs() < 1e-6, "{wait}");
        load.accepted(64); // a full call now stands between a newcomer and the running one
        let wait = load.wait_ahead().as_secs_f64();
        assert!((wait - (0.125 + 64.0 * 0.025)).abs() < 1e-6, "{wait}");
    }

    #[test]
    fn the_fixed_cost_of_a_call_is_learned_from_calls_of_different_sizes() {
        let mut cost = CallCost::default();
        for n in [1.0, 8.0, 64.0, 1.0, 32.0] {
            cost.observe(n, 0.008 + 0.004 * n);
        }
        let (fixed, per_input) = cost.fit();
        assert!((fixed - 0.008).abs() < 1e-9, "{fixed}");
        assert!((per_input - 0.004).abs() < 1e-9, "{per_input}");
        // Slower lately: the recent calls weigh more.
        for _ in 0..20 {
            cost.observe(64.0, 2.0 * (0.008 + 0.004 * 64.0));
        }
        assert!(cost.call_secs(64) > 1.9 * (0.008 + 0.004 * 64.0));
    }
}
