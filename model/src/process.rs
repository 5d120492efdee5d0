//! Process-wide settings for small, shared CPUs, applied by the binary before anything else, and
//! where heavy work runs.

/// Applies [`single_threaded_elementwise`] and [`keep_freed_memory`].
pub fn configure() {
    single_threaded_elementwise();
    keep_freed_memory();
}

/// candle's element-wise ops split work over a spinning barrier pool sized by
/// `CANDLE_NUM_THREADS`; they are memory-bound, and on a small, shared machine the main thread
/// spins waiting for a descheduled worker (a fifth of the CPU time in `perf`). One thread for
/// them (matmuls keep rayon's pool, `RAYON_NUM_THREADS`) made training 1.8x and prompt
/// processing 1.2x faster on 2 cores, decoding no slower. Must run before candle's first
/// element-wise op; an explicit setting wins.
pub fn single_threaded_elementwise() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// glibc serves allocations from 128 KiB up with fresh `mmap`s and gives them back on free, so
/// every batch's column buffers and every step's tensors are new pages the kernel must zero
/// (`clear_page_erms` was a fifth of ingest's CPU time). Raising the mmap threshold to its
/// maximum and the trim threshold keeps freed memory in the heap for the next allocation.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes allocator tunables; called before other threads start.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

/// Runs `f` on a thread of rayon's pool: a forward or backward pass opens a parallel region per
/// matmul, and one started from outside the pool hands each region to sleeping workers and
/// sleeps itself (three context switches per region), where a worker forks and joins with its
/// peers directly. Generation decoded 1.3x faster on 2 cores this way.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    rayon::scope(|_| f())
}
