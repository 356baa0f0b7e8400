//! `compute_threads` in a process of its own: it reads the environment, which no other
//! test may change beside it.

#[test]
fn compute_threads_follow_rayon_num_threads_else_the_cores() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: the only test in this binary; nothing else reads the environment now.
    let not_the_cores = (cores + 1).to_string();
    unsafe { std::env::set_var("RAYON_NUM_THREADS", &not_the_cores) };
    assert_eq!(empathy_common::compute_threads(), cores + 1);
    for unusable in ["0", "many", ""] {
        unsafe { std::env::set_var("RAYON_NUM_THREADS", unusable) };
        assert_eq!(empathy_common::compute_threads(), cores, "{unusable:?}");
    }
    unsafe { std::env::remove_var("RAYON_NUM_THREADS") };
    assert_eq!(empathy_common::compute_threads(), cores);
}
