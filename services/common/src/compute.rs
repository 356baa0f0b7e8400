//! Process-wide settings for the model code (candle).

/// Runs the models on `threads` compute threads (0: `RAYON_NUM_THREADS` if set, else
/// every core) and keeps freed tensor memory in the process for the next forward pass.
///
/// rayon sizes its thread pool from `RAYON_NUM_THREADS` once per process, so the
/// setting must be in place before any model (or plugin) runs one. It is always set:
/// without it candle counts the physical cores for every matrix product by reading
/// /proc/cpuinfo, 7% of a situation decoding step.
///
/// # Safety
///
/// It sets an environment variable: no other thread may exist yet. Call it first thing
/// in `main`, before the tokio runtime is built.
pub unsafe fn configure_compute(threads: u32) {
    let threads = match threads {
        0 => compute_threads(),
        n => n as usize,
    };
    // SAFETY: the caller guarantees that no other thread exists yet.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    keep_freed_memory();
}

/// The compute threads the models run on: `RAYON_NUM_THREADS` (which
/// `configure_compute` always sets) where it is set, else every core. What runs beside
/// the models, such as fusion's readings at once, is sized from this, not from the
/// cores: a deployment that gives a service 4 threads on a 64-core host means 4.
pub fn compute_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `configure_compute(threads)`, then `main` on a multi-threaded tokio runtime: the
/// order a service that runs models needs.
///
/// # Safety
///
/// As `configure_compute`: call it first thing in `main`, before any other thread exists.
pub unsafe fn run_with_compute(
    threads: u32,
    main: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    // SAFETY: the caller guarantees that no other thread exists yet.
    unsafe { configure_compute(threads) };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(main)
}

/// Each layer of a model allocates outputs of megabytes (MiniLM's feed-forward: 47 MB
/// for 64 long sentences). glibc serves blocks over 32 MB with a fresh mmap and gives
/// freed heap back to the kernel, so every pass paid page faults and zeroing again: 10%
/// of the text encoder's time. Raising both thresholds keeps the pages, at the cost of
/// holding the peak of one pass (plugins share the host's malloc, so this covers them).
/// Safe at any time (benchmarks inside a test harness call it on its own).
pub fn keep_freed_memory() {
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
