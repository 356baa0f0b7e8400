//! Process-wide settings for the model code (candle).

/// Runs the models on `threads` compute threads; 0 leaves the default (all cores).
///
/// candle sizes its thread pool from `RAYON_NUM_THREADS` once per process, so the
/// setting must be in place before any model (or plugin) runs one.
///
/// # Safety
///
/// It sets an environment variable: no other thread may exist yet. Call it first thing
/// in `main`, before the tokio runtime is built.
pub unsafe fn set_compute_threads(threads: u32) {
    if threads > 0 {
        // SAFETY: the caller guarantees that no other thread exists yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
}
