//! Process-wide settings for the model code (candle).

/// Runs the models on `threads` compute threads (0 leaves the default: all cores) and
/// keeps freed tensor memory in the process for the next forward pass.
///
/// candle sizes its thread pool from `RAYON_NUM_THREADS` once per process, so the
/// setting must be in place before any model (or plugin) runs one.
///
/// # Safety
///
/// It sets an environment variable: no other thread may exist yet. Call it first thing
/// in `main`, before the tokio runtime is built.
pub unsafe fn configure_compute(threads: u32) {
    if threads > 0 {
        // SAFETY: the caller guarantees that no other thread exists yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    keep_freed_memory();
}

/// Each layer of a model allocates outputs of megabytes (MiniLM's feed-forward: 47 MB
/// for 64 long sentences). glibc serves blocks over 32 MB with a fresh mmap and gives
/// freed heap back to the kernel, so every pass paid page faults and zeroing again: 10%
/// of the text encoder's time. Raising both thresholds keeps the pages, at the cost of
/// holding the peak of one pass (plugins share the host's malloc, so this covers them).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const KEEP: libc::c_int = 1 << 30;
        // SAFETY: mallopt only changes allocator parameters; it takes the arena lock.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, KEEP);
            libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP);
        }
    }
}
