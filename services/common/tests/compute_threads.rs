//! `compute_threads` in a process of its own: it reads the environment, which no other
//! test may change beside it.

/// Sets or (None) removes RAYON_NUM_THREADS.
fn set_threads(value: Option<&str>) {
    // SAFETY: the only test in this binary; no other thread reads the environment.
    unsafe {
        match value {
            Some(v) => std::env::set_var("RAYON_NUM_THREADS", v),
            None => std::env::remove_var("RAYON_NUM_THREADS"),
        }
    }
}

#[test]
fn compute_threads_follow_rayon_num_threads_else_the_cores() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    set_threads(Some(&(cores + 1).to_string()));
    assert_eq!(empathy_common::compute_threads(), cores + 1);
    for unusable in ["0", "many", ""] {
        set_threads(Some(unusable));
        assert_eq!(empathy_common::compute_threads(), cores, "{unusable:?}");
    }
    set_threads(None);
    assert_eq!(empathy_common::compute_threads(), cores);
}
