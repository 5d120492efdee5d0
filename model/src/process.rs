//! Process-wide settings for small, shared CPUs, applied by the binary before anything else, and
//! where heavy work runs.

/// Applies [`single_threaded_elementwise`], [`name_the_thread_count`] and [`keep_freed_memory`].
pub fn configure() {
    single_threaded_elementwise();
    name_the_thread_count();
    keep_freed_memory();
}

/// candle asks how many threads a matmul may use on every call, and where `RAYON_NUM_THREADS`
/// is unset it counts the physical cores by parsing `/proc/cpuinfo` (`num_cpus::get_physical`)
/// each time: 7.7% of a prefill step's samples (`perf`, seven 18-token prompts together), all
/// in the kernel's `show_cpuinfo`. Setting the variable to the count rayon uses anyway (the
/// available parallelism, its own default) answers that from the environment. Must run before
/// rayon's pool starts; an explicit setting wins.
pub fn name_the_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
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

/// The binary allocates with mimalloc (version 3, as the `mimalloc` crate builds it), which hands
/// freed memory back to the kernel a second after it is freed; activations freed between forward
/// passes then come back as fresh pages the kernel must zero again. Keeping freed memory for reuse
/// made a 512-token prefill 1.09x faster (`bench generate`, means of four alternating runs: 631 vs
/// 579 tok/s; glibc's malloc 626) and left training's peak RSS within 3%. An explicit
/// `MIMALLOC_PURGE_DELAY` wins. Does nothing where mimalloc is not the global allocator.
pub fn keep_freed_memory() {
    /// `mi_option_purge_delay` in mimalloc's `mi_option_t` (the same index in versions 2 and 3;
    /// the bindings do not name it).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one tunable of mimalloc's option table, which is safe at any time.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) };
    }
}

/// Writes `bytes` of heap once, in blocks of the size a KV cache's buffers take, and frees it,
/// so that later allocations up to that much reuse memory the kernel has already supplied
/// ([`keep_freed_memory`] keeps it in the process). A server holds its prefix-cache budget of KV
/// caches in steady state; reserving it at start (as vLLM allocates its KV blocks up front)
/// takes the first touch of those pages out of the requests. On this VM a fresh page's first
/// touch ran near 1 GB/s (400 MB in 0.38-0.42 s): the kernel's page clearing was 5.2% of a
/// `bench serve` run's samples, 1.7% with 400 MB written at start. Under another allocator the
/// memory may go back to the system, which costs only the time spent here.
pub fn prefault_heap(bytes: usize) {
    const BLOCK: usize = 48 << 10;
    let blocks: Vec<Vec<u8>> = (0..bytes / BLOCK).map(|_| vec![1u8; BLOCK]).collect();
    drop(std::hint::black_box(blocks));
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

/// [`on_pool`], with the pool's other workers kept looking for work until `f` returns instead
/// of going to sleep between its parallel regions. A decoding step opens some 150 regions (five
/// per layer) with short serial stretches between; a worker that fell asleep in one stretch had
/// to be woken by a system call for the next region, and the scheduler's functions were 17% of
/// an 8-row step's samples. The workers poll with `rayon::yield_now`, which runs any job the
/// step forks; they stop when `f` returns (or panics), or after [`IDLE_LIMIT`] without work.
pub fn on_pool_awake<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use std::sync::atomic::{AtomicBool, Ordering};
    /// Sets the flag when dropped, so a panic in `f` also releases the workers.
    struct Release<'a>(&'a AtomicBool);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    on_pool(|| {
        let caller = rayon::current_thread_index();
        let done = AtomicBool::new(false);
        rayon::scope(|s| {
            s.spawn_broadcast(|_, ctx| {
                // The caller's own copy must not spin: it runs only when the caller waits.
                if Some(ctx.index()) != caller {
                    poll_for_work(&done);
                }
            });
            let _release = Release(&done);
            f()
        })
    })
}

/// How long a worker of [`on_pool_awake`] polls without finding work before it lets go.
///
/// A worker can pick its polling job up while it waits inside a job it stole from the step
/// (it found the step's first forked job before its polling job had arrived). Polling until the
/// step ends would then hold that job under it, and the step, which waits for the job, never
/// ended: a served model hung at 100% CPU (twice in some forty `bench serve` runs, a worker's
/// stack showed the polling job above a stolen matmul job). Giving up after a stretch with
/// nothing to do lets the job below finish. A step's serial stretches last microseconds (the
/// longest in a decoding step some 30 µs), so the workers stay awake through them.
pub const IDLE_LIMIT: std::time::Duration = std::time::Duration::from_millis(1);

/// Runs the jobs the pool offers until `done` is set or none came for [`IDLE_LIMIT`].
fn poll_for_work(done: &std::sync::atomic::AtomicBool) {
    let mut idle_since = None;
    while !done.load(std::sync::atomic::Ordering::Acquire) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            idle_since = None;
            continue;
        }
        let now = std::time::Instant::now();
        if now.duration_since(*idle_since.get_or_insert(now)) > IDLE_LIMIT {
            return;
        }
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use rayon::prelude::*;

    use super::{on_pool_awake, poll_for_work, IDLE_LIMIT};

    #[test]
    fn an_awake_step_runs_its_parallel_work_and_returns_its_value() {
        let sum: u64 = on_pool_awake(|| (0..10_000u64).into_par_iter().map(|i| i * i).sum());
        assert_eq!(sum, (0..10_000u64).map(|i| i * i).sum::<u64>());
    }

    #[test]
    fn a_panic_in_the_step_releases_the_workers_and_propagates() {
        let r = std::panic::catch_unwind(|| on_pool_awake(|| -> u32 { panic!("step failed") }));
        assert!(r.is_err());
        // The pool still serves the next step.
        assert_eq!(on_pool_awake(|| 7), 7);
    }

    #[test]
    fn steps_started_from_parallel_jobs_all_finish() {
        let totals: Vec<u64> = (0..8u64)
            .into_par_iter()
            .map(|k| on_pool_awake(|| (0..1000u64).into_par_iter().map(|i| i + k).sum()))
            .collect();
        assert_eq!(
            totals,
            (0..8u64).map(|k| (0..1000u64).map(|i| i + k).sum::<u64>()).collect::<Vec<_>>()
        );
    }

    /// The hang `IDLE_LIMIT` prevents: a polling job run above a job the step waits for, whose
    /// step therefore never sets `done`. Here `done` is never set at all; the poller must still
    /// return, and the work beside it finish.
    #[test]
    fn a_poller_whose_step_cannot_end_lets_go_when_idle() {
        let never = std::sync::atomic::AtomicBool::new(false);
        let started = std::time::Instant::now();
        let (_, sum) =
            rayon::join(|| poll_for_work(&never), || (0..1000u64).into_par_iter().sum::<u64>());
        assert_eq!(sum, 499_500);
        let waited = started.elapsed();
        assert!(waited >= IDLE_LIMIT && waited < IDLE_LIMIT * 1000, "{waited:?}");
    }
}
