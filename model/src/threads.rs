//! Thread settings for candle on small, shared CPUs.

/// candle's element-wise ops split work over a spinning barrier pool sized by
/// `CANDLE_NUM_THREADS`; they are memory-bound, and on a small, shared machine the main thread
/// spins waiting for a descheduled worker (a fifth of the CPU time in `perf`). One thread for
/// them (matmuls keep rayon's pool, `RAYON_NUM_THREADS`) made training 1.8x and prompt
/// processing 1.2x faster on 2 cores, decoding no slower. Must run before candle's first
/// element-wise op, so the binary calls it first thing; an explicit setting wins.
pub fn single_threaded_elementwise() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}
