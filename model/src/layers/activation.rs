//! The gated MLP's `silu(gate) * up` as one pass (and one pass back), with `exp` sixteen lanes at
//! a time on AVX-512.
//!
//! Composed from candle ops it is a scalar `exp` per element plus two more passes forward and
//! half a dozen backward; for scoring that was a tenth of the time.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::bf16_gemm::with_f32;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// `silu(gate) * up`, differentiable in both.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
    let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == candle_core::DType::F32;
    if gate.shape() != up.shape() || !cpu_f32(gate) || !cpu_f32(up) {
        return gate.silu()? * up;
    }
    let (gate, up) = (gate.contiguous()?, up.contiguous()?);
    if gate.track_op() || up.track_op() {
        gate.apply_op2(&up, SiluMul)
    } else {
        gate.apply_op2_no_bwd(&up, &SiluMul)
    }
}

/// `silu(gate) * up` of `y` `(..., 2 i)` whose rows hold a gate then an up of `i` values each
/// (a fused gate/up projection's output), read in place: without gradients the same values as
/// [`silu_mul`] of the two halves, without copying them out first (at eight decoding rows the
/// two copies cost more than the arithmetic).
pub fn silu_mul_halves(y: &Tensor) -> candle_core::Result<Tensor> {
    let width = y.dim(candle_core::D::Minus1)?;
    let i = width / 2;
    if y.track_op()
        || !y.device().is_cpu()
        || y.dtype() != candle_core::DType::F32
        || width % 2 != 0
    {
        return silu_mul(
            &y.narrow(candle_core::D::Minus1, 0, i)?,
            &y.narrow(candle_core::D::Minus1, i, i)?,
        );
    }
    let mut out = vec![0f32; y.elem_count() / 2];
    with_f32(y, |v| {
        let row = |(o, gu): (&mut [f32], &[f32])| {
            let (g, u) = gu.split_at(i);
            silu_times(g, u, o);
        };
        if out.len() >= CHUNK {
            out.par_chunks_exact_mut(i).zip(v.par_chunks_exact(width)).for_each(row);
        } else {
            out.chunks_exact_mut(i).zip(v.chunks_exact(width)).for_each(row);
        }
        Ok(())
    })?;
    let mut dims = y.dims().to_vec();
    *dims.last_mut().expect("rank >= 1") = i;
    Tensor::from_vec(out, dims, y.device())
}

struct SiluMul;

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "silu-mul"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (g, u) = (contiguous(gs, gl)?, contiguous(us, ul)?);
        let mut out = vec![0f32; g.len()];
        out.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(u.par_chunks(CHUNK))
            .for_each(|((o, g), u)| silu_times(g, u, o));
        Ok((CpuStorage::F32(out), gl.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let mut dg = vec![0f32; gate.elem_count()];
        let mut du = vec![0f32; gate.elem_count()];
        with_f32(gate, |g| {
            with_f32(up, |u| {
                with_f32(grad, |d| {
                    let parts = dg
                        .par_chunks_mut(CHUNK)
                        .zip(du.par_chunks_mut(CHUNK))
                        .zip(g.par_chunks(CHUNK))
                        .zip(u.par_chunks(CHUNK))
                        .zip(d.par_chunks(CHUNK));
                    parts.for_each(|((((dg, du), g), u), d)| {
                        let mut s = vec![0f32; g.len()];
                        sigmoid(g, &mut s);
                        for i in 0..dg.len() {
                            // silu'(g) = s (1 + g (1 - s)).
                            du[i] = d[i] * g[i] * s[i];
                            dg[i] = d[i] * u[i] * s[i] * (1.0 + g[i] * (1.0 - s[i]));
                        }
                    });
                    Ok(())
                })
            })
        })?;
        let shape = gate.shape();
        Ok((
            Some(Tensor::from_vec(dg, shape, gate.device())?),
            Some(Tensor::from_vec(du, shape, gate.device())?),
        ))
    }
}

/// The values of a contiguous f32 CPU tensor.
pub(super) fn contiguous<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("expected f32") };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("expected a contiguous tensor"),
    }
}

/// `out = silu(g) * u` elementwise, as `g * sigmoid(g) * u` (the sigmoid computed into `out`).
fn silu_times(g: &[f32], u: &[f32], out: &mut [f32]) {
    sigmoid(g, out);
    for ((o, g), u) in out.iter_mut().zip(g).zip(u) {
        *o = g * *o * u;
    }
}

/// `s = 1 / (1 + e^-g)` elementwise, through `e^-|g|` so that `exp` never overflows.
fn sigmoid(g: &[f32], s: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the feature was detected at run time; both slices have the same length.
        unsafe { avx512::sigmoid(g, s) };
        return;
    }
    for (s, &g) in s.iter_mut().zip(g) {
        let e = (-g.abs()).exp();
        *s = if g >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) };
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use crate::layers::vexp::{exp, lanes};

    /// [`super::sigmoid`] sixteen lanes at a time.
    ///
    /// # Safety
    /// AVX-512F must be available and `s` as long as `g`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn sigmoid(g: &[f32], s: &mut [f32]) {
        assert_eq!(g.len(), s.len());
        let one = _mm512_set1_ps(1.0);
        for at in (0..g.len()).step_by(16) {
            let m = lanes((g.len() - at).min(16));
            let x = _mm512_maskz_loadu_ps(m, g.as_ptr().add(at));
            let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(x)));
            let inv = _mm512_div_ps(one, _mm512_add_ps(one, e));
            let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_setzero_ps());
            _mm512_mask_storeu_ps(
                s.as_mut_ptr().add(at),
                m,
                _mm512_mask_mul_ps(inv, negative, inv, e),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[test]
    fn equals_silu_times_up_and_its_gradients() {
        let dev = Device::Cpu;
        let g = Var::from_tensor(&(Tensor::randn(0f32, 4.0, (3, 40_001), &dev).unwrap())).unwrap();
        let u = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 40_001), &dev).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1.0, (3, 40_001), &dev).unwrap();
        let close = |a: &Tensor, b: &Tensor| {
            let (a, b): (Vec<f32>, Vec<f32>) = (
                a.flatten_all().unwrap().to_vec1().unwrap(),
                b.flatten_all().unwrap().to_vec1().unwrap(),
            );
            a.iter().zip(&b).enumerate().for_each(|(i, (x, y))| {
                assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "[{i}] {x} vs {y}")
            });
        };
        let want = (g.as_tensor().silu().unwrap() * u.as_tensor()).unwrap();
        let got = silu_mul(g.as_tensor(), u.as_tensor()).unwrap();
        close(&got, &want);
        let gw = (&want * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gg = (&got * &w).unwrap().sum_all().unwrap().backward().unwrap();
        close(gg.get(g.as_tensor()).unwrap(), gw.get(g.as_tensor()).unwrap());
        close(gg.get(u.as_tensor()).unwrap(), gw.get(u.as_tensor()).unwrap());
        // Without gradients it is the same values.
        close(&silu_mul(&g.as_tensor().detach(), &u.as_tensor().detach()).unwrap(), &got);
    }

    #[test]
    fn the_halves_of_a_fused_output_give_the_bits_of_the_parts() {
        let dev = Device::Cpu;
        for rows in [1, 3, 40] {
            let y = Tensor::randn(0f32, 3.0, (rows, 1, 2 * 1000), &dev).unwrap();
            let (g, u) = (y.narrow(2, 0, 1000).unwrap(), y.narrow(2, 1000, 1000).unwrap());
            let want: Vec<f32> =
                silu_mul(&g, &u).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let got = silu_mul_halves(&y).unwrap();
            assert_eq!(got.dims(), [rows, 1, 1000]);
            assert_eq!(got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want, "{rows} rows");
        }
    }
}
