//! `e^x` in sixteen AVX-512 lanes, shared by the attention and softmax kernels.

use std::arch::x86_64::*;

/// `e^x` for `x <= 0` in sixteen lanes: `x = n ln 2 + r` with `|r| <= ln 2 / 2`, a degree-6
/// Taylor polynomial for `e^r` (relative error below 2e-7), scaled by `2^n`. Lanes below -87
/// give `e^-87` rather than 0; callers that need exact zeros for `-inf` mask them.
#[target_feature(enable = "avx512f")]
pub fn exp(x: __m512) -> __m512 {
    let x = _mm512_max_ps(x, _mm512_set1_ps(-87.0));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
    let mut p = _mm512_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(p, n)
}

/// Lanes `0..n` of sixteen.
pub fn lanes(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}
