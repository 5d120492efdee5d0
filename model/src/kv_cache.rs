//! The key/value cache of one generation batch, kept outside the model so that one loaded model
//! can serve many sessions.
//!
//! For continuous batching each sequence owns a batch-1 cache, and a step stacks the new tokens
//! of whichever caches are live, a prompt or one decoded token each ([`crate::Model::forward_ragged`]).
//! A sequence joins the batch by adding its cache to that list and leaves by dropping it; no row
//! is ever padded or recomputed. A cache's first positions can be copied into a new one
//! ([`KvCache::prefix`]), which lets a server reuse a prompt prefix it has already computed.

use candle_core::{DType, Storage, Tensor};
use half::slice::HalfFloatSliceExt;

use crate::config::Config;
use crate::Result;

/// Capacities are whole multiples of this many positions; a full buffer grows to at least
/// twice its capacity.
const STEP: usize = 64;

/// The capacity for `needed` positions in a buffer of `old` positions (0 for a new one).
fn capacity_for(needed: usize, old: usize) -> usize {
    needed.max(2 * old).div_ceil(STEP).max(1) * STEP
}

/// A zeroed `(b, h, capacity, d)` buffer whose pages the kernel supplies as they are first
/// written. candle's `zeros` writes every f16 zero (`vec!` of a type the standard library does
/// not know to be zero when all bits are), so a new f16 cache faulted in all its pages at once:
/// copying a cached prefix into 7 new caches took 137 ms of a serving step.
fn zeroed(
    shape: (usize, usize, usize, usize),
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    if dtype != DType::F16 || !device.is_cpu() {
        return Ok(Tensor::zeros(shape, dtype, device)?);
    }
    let bits = std::mem::ManuallyDrop::new(vec![0u16; n]);
    // SAFETY: `f16` is a `repr(transparent)` `u16`, so the allocation, length and capacity are
    // those of a `Vec<f16>` of `n` zeros, which takes the allocation over.
    let halves =
        unsafe { Vec::from_raw_parts(bits.as_ptr() as *mut half::f16, n, bits.capacity()) };
    Ok(Tensor::from_vec(halves, shape, device)?)
}

/// One layer's buffers `(batch, kv_heads, capacity, head_dim)`, the first `len` positions filled.
#[derive(Debug)]
struct Layer {
    k: Tensor,
    v: Tensor,
}

impl Layer {
    fn capacity(&self) -> usize {
        self.k.dim(2).unwrap_or(0)
    }

    /// Fresh buffers of `capacity` positions holding the first `len` of `self`'s.
    fn copied(&self, len: usize, capacity: usize) -> Result<Layer> {
        let grown = |x: &Tensor| -> Result<Tensor> {
            let (b, h, _, d) = x.dims4()?;
            let fresh = zeroed((b, h, capacity, d), x.dtype(), x.device())?;
            copy_positions(x, &fresh, len)?;
            Ok(fresh)
        };
        Ok(Layer { k: grown(&self.k)?, v: grown(&self.v)? })
    }
}

/// Cached keys and values of every layer for a batch of sequences of equal length (usually one).
/// A clone is a deep copy: appending to one never changes the other.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<Option<Layer>>,
    len: usize,
    dtype: DType,
}

impl Clone for KvCache {
    fn clone(&self) -> Self {
        self.prefix(self.len).expect("copying a KV cache's filled positions")
    }
}

impl KvCache {
    /// An empty f32 cache for a model with `cfg`.
    pub fn new(cfg: &Config) -> Self {
        Self::with_dtype(cfg, DType::F32)
    }

    /// An empty cache that stores keys and values as `dtype` (f32, or f16 as llama.cpp's
    /// default cache: half the memory, and half the bytes a decoding step's attention reads).
    /// See [`crate::Model::kv_cache`].
    pub fn with_dtype(cfg: &Config, dtype: DType) -> Self {
        Self { layers: (0..cfg.num_hidden_layers).map(|_| None).collect(), len: 0, dtype }
    }

    /// How keys and values are stored.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position but keeps the buffers, so that the next sequence appends into
    /// memory already in use (a fresh buffer's pages fault in as they are first written).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// A new cache holding copies of this one's first `n` positions (at most its length): the
    /// state after a prefix of the tokens, from which another continuation can go on.
    pub fn prefix(&self, n: usize) -> Result<KvCache> {
        let mut copy = KvCache {
            layers: self.layers.iter().map(|_| None).collect(),
            len: 0,
            dtype: self.dtype,
        };
        self.copy_prefix_into(n, &mut copy)?;
        Ok(copy)
    }

    /// Makes `dst` hold copies of this cache's first `n` positions (at most its length) and
    /// nothing else, in `dst`'s buffers where they are large enough.
    pub fn copy_prefix_into(&self, n: usize, dst: &mut KvCache) -> Result<()> {
        let n = n.min(self.len);
        dst.reset();
        dst.dtype = self.dtype;
        dst.layers.resize_with(self.layers.len(), || None);
        if n > 0 {
            for (i, l) in self.layers.iter().enumerate() {
                if let Some(l) = l {
                    let (b, h, _, d) = l.k.dims4()?;
                    let to = dst.reserve(i, (b, h, d), n, l.k.device())?;
                    copy_positions(&l.k, &to.k, n)?;
                    copy_positions(&l.v, &to.v, n)?;
                }
            }
        }
        dst.advance(n);
        Ok(())
    }

    /// Bytes held by the buffers (their whole capacity).
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .map(|l| 2 * l.k.elem_count() * self.dtype.size_in_bytes())
            .sum()
    }

    /// Appends `k`, `v` (`(batch, kv_heads, seq, head_dim)`) to layer `layer` after the cached
    /// positions, returning the full keys and values as stored (in the cache's dtype). Every
    /// layer appends the same positions before [`Self::advance`] records them.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let store = |x: &Tensor| x.to_dtype(self.dtype)?.contiguous();
        let (k, v) = (store(k)?, store(v)?);
        let (b, h, t, d) = k.dims4()?;
        let len = self.len;
        let l = self.reserve(layer, (b, h, d), t, k.device())?;
        l.k.slice_set(&k, 2, len)?;
        l.v.slice_set(&v, 2, len)?;
        Ok((l.k.narrow(2, 0, len + t)?, l.v.narrow(2, 0, len + t)?))
    }

    /// Writes the keys and values of new positions of one sequence (a batch-1 cache) into
    /// layer `layer` after the cached ones: one row of `(kv_heads, head_dim)` f32 per position,
    /// converted to the cache's dtype. As with [`Self::append`], [`Self::advance`] records them.
    pub(crate) fn write_rows(
        &mut self,
        layer: usize,
        k: Rows<'_>,
        v: Rows<'_>,
        heads: usize,
        hd: usize,
    ) -> Result<()> {
        let at = self.len;
        let l = self.reserve(layer, (1, heads, hd), k.count, &candle_core::Device::Cpu)?;
        l.k.inplace_op1(&WriteRows { rows: k, heads, hd, at })?;
        l.v.inplace_op1(&WriteRows { rows: v, heads, hd, at })?;
        Ok(())
    }

    /// Layer `layer`'s key and value buffers `(batch, kv_heads, capacity, head_dim)`, of which
    /// the first [`Self::len`] positions (and any written since) are filled; `None` before the
    /// first write.
    pub(crate) fn buffers(&self, layer: usize) -> Option<(&Tensor, &Tensor)> {
        self.layers.get(layer)?.as_ref().map(|l| (&l.k, &l.v))
    }

    /// Layer `layer`'s buffers, grown (or made) to hold `t` positions more than the cache's
    /// length for `(batch, kv_heads, head_dim)`.
    fn reserve(
        &mut self,
        layer: usize,
        (b, h, d): (usize, usize, usize),
        t: usize,
        device: &candle_core::Device,
    ) -> Result<&Layer> {
        let (len, dtype) = (self.len, self.dtype);
        let slot = &mut self.layers[layer];
        // A kept buffer of another shape or dtype (a cache reused for another model) is dropped.
        if slot.as_ref().is_some_and(|l| {
            l.k.dtype() != dtype
                || l.k.dims4().ok().is_none_or(|(lb, lh, _, ld)| (lb, lh, ld) != (b, h, d))
        }) {
            *slot = None;
        }
        let capacity = slot.as_ref().map_or(0, Layer::capacity);
        if len + t > capacity {
            let grown = capacity_for(len + t, capacity);
            *slot = Some(match slot.as_ref() {
                Some(l) => l.copied(len, grown)?,
                None => {
                    let zeros = || zeroed((b, h, grown, d), dtype, device);
                    Layer { k: zeros()?, v: zeros()? }
                }
            });
        }
        Ok(slot.as_ref().expect("allocated above"))
    }

    /// Records that `n` positions were appended to every layer.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}

/// `count` rows of `width` f32 values in a buffer: row `i` is `data[start + i * stride..][..width]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rows<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) start: usize,
    pub(crate) stride: usize,
    pub(crate) count: usize,
    pub(crate) width: usize,
}

impl<'a> Rows<'a> {
    /// Row `i`.
    pub(crate) fn row(&self, i: usize) -> &'a [f32] {
        &self.data[self.start + i * self.stride..][..self.width]
    }

    /// Rows `from..from + count`.
    pub(crate) fn range(self, from: usize, count: usize) -> Rows<'a> {
        debug_assert!(from + count <= self.count);
        Rows { start: self.start + from * self.stride, count, ..self }
    }
}

/// Writes rows of `(heads, hd)` f32 into a `(1, heads, capacity, hd)` buffer from position `at`.
struct WriteRows<'a> {
    rows: Rows<'a>,
    heads: usize,
    hd: usize,
    at: usize,
}

impl candle_core::InplaceOp1 for WriteRows<'_> {
    fn name(&self) -> &'static str {
        "kv-cache-write-rows"
    }

    fn cpu_fwd(
        &self,
        storage: &mut candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let (st, start) = (layout.stride(), layout.start_offset());
        let (heads, hd, t) = (self.heads, self.hd, self.rows.count);
        let dims = layout.dims();
        if dims.len() != 4
            || dims[1] != heads
            || dims[3] != hd
            || st[3] != 1
            || self.at + t > dims[2]
            || self.rows.width != heads * hd
        {
            candle_core::bail!(
                "{}: {t} rows of {} values as {heads}x{hd} at {} do not fit a buffer of {dims:?}",
                self.name(),
                self.rows.width,
                self.at
            );
        }
        let dst = |pos: usize, h: usize| start + h * st[1] + pos * st[2];
        // Every head of every row, with where it goes.
        let heads_at = (0..t).flat_map(|i| {
            self.rows
                .row(i)
                .chunks_exact(hd)
                .enumerate()
                .map(move |(h, src)| (dst(self.at + i, h), src))
        });
        match storage {
            candle_core::CpuStorage::F32(buf) => {
                heads_at.for_each(|(at, src)| buf[at..at + hd].copy_from_slice(src))
            }
            candle_core::CpuStorage::F16(buf) => {
                heads_at.for_each(|(at, src)| buf[at..at + hd].convert_from_f32_slice(src))
            }
            _ => candle_core::bail!("{}: caches are f32 or f16", self.name()),
        }
        Ok(())
    }
}

/// Copies positions `0..n` of every head of buffer `src` into buffer `dst` (both `(batch, heads,
/// capacity, head_dim)`, one dtype): one copy per head. Narrowing, making contiguous and
/// `slice_set` took a dozen candle calls per layer, and copying a 30-token prefix into a new
/// request's cache took about 2 ms of a serving step.
fn copy_positions(src: &Tensor, dst: &Tensor, n: usize) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let (storage, layout) = src.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => dst.inplace_op1(&CopyPositions { src: cpu, layout, n })?,
        _ => {
            drop(storage);
            dst.slice_set(&src.narrow(2, 0, n)?.contiguous()?, 2, 0)?
        }
    }
    Ok(())
}

/// [`copy_positions`] on the CPU.
struct CopyPositions<'a> {
    src: &'a candle_core::CpuStorage,
    layout: &'a candle_core::Layout,
    n: usize,
}

impl candle_core::InplaceOp1 for CopyPositions<'_> {
    fn name(&self) -> &'static str {
        "kv-cache-copy-positions"
    }

    fn cpu_fwd(
        &self,
        storage: &mut candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let (sd, dd) = (self.layout.dims(), layout.dims());
        let (ss, ds) = (self.layout.stride(), layout.stride());
        let rows_contiguous =
            |dims: &[usize], st: &[usize]| dims.len() == 4 && st[3] == 1 && st[2] == dims[3];
        if !rows_contiguous(sd, ss)
            || !rows_contiguous(dd, ds)
            || sd[0] != dd[0]
            || sd[1] != dd[1]
            || sd[3] != dd[3]
            || self.n > sd[2].min(dd[2])
        {
            candle_core::bail!(
                "{}: {} positions from a buffer of {sd:?} into one of {dd:?}",
                self.name(),
                self.n
            );
        }
        let len = self.n * sd[3];
        // Where each head's positions start in the source and in the destination.
        let starts = (0..sd[0]).flat_map(|b| (0..sd[1]).map(move |h| (b, h))).map(|(b, h)| {
            (
                self.layout.start_offset() + b * ss[0] + h * ss[1],
                layout.start_offset() + b * ds[0] + h * ds[1],
            )
        });
        fn copy<T: Copy>(
            s: &[T],
            d: &mut [T],
            starts: impl Iterator<Item = (usize, usize)>,
            len: usize,
        ) {
            for (i, o) in starts {
                d[o..o + len].copy_from_slice(&s[i..i + len]);
            }
        }
        match (self.src, storage) {
            (candle_core::CpuStorage::F32(s), candle_core::CpuStorage::F32(d)) => {
                copy(s, d, starts, len)
            }
            (candle_core::CpuStorage::F16(s), candle_core::CpuStorage::F16(d)) => {
                copy(s, d, starts, len)
            }
            _ => candle_core::bail!("{}: buffers of one dtype, f32 or f16", self.name()),
        }
        Ok(())
    }
}

/// Cached keys or values `(batch, heads, len, head_dim)` as f32. An f16 cache's rows are
/// converted a head at a time by the CPU's conversion instructions, where candle's `to_dtype`
/// converts one value at a time (5% of a prefill step's samples).
pub(crate) fn widened(x: &Tensor) -> Result<Tensor> {
    if x.dtype() != DType::F16 || !x.device().is_cpu() {
        return Ok(x.to_dtype(DType::F32)?);
    }
    let (b, h, s, d) = x.dims4()?;
    let out = {
        let (storage, layout) = x.storage_and_layout();
        let st = layout.stride();
        let Storage::Cpu(cpu) = &*storage else { unreachable!("checked to be on the CPU") };
        if st[3] != 1 || st[2] != d {
            None
        } else {
            let data = cpu.as_slice::<half::f16>()?;
            let mut out = vec![0f32; b * h * s * d];
            for (i, dst) in out.chunks_exact_mut(s * d).enumerate() {
                let at = layout.start_offset() + (i / h) * st[0] + (i % h) * st[1];
                data[at..at + s * d].convert_to_f32_slice(dst);
            }
            Some(out)
        }
    };
    Ok(match out {
        Some(v) => Tensor::from_vec(v, (b, h, s, d), x.device())?,
        None => x.to_dtype(DType::F32)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn config(layers: usize) -> Config {
        serde_json::from_value(serde_json::json!({
            "model_type": "llama", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": layers,
            "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 10
        }))
        .unwrap()
    }

    fn rows(from: usize, t: usize) -> Tensor {
        Tensor::arange(from as f32, (from + t * 4) as f32, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, t, 4))
            .unwrap()
    }

    fn fill(c: &mut KvCache, t: usize) -> (Tensor, Tensor) {
        let at = c.len() * 4;
        let kv = c.append(0, &rows(at, t), &rows(1000 + at, t)).unwrap();
        c.advance(t);
        kv
    }

    #[test]
    fn appends_grow_past_their_capacity_and_keep_every_position() {
        let mut c = KvCache::new(&config(1));
        fill(&mut c, 50);
        fill(&mut c, 20);
        assert_eq!(c.bytes(), 2 * 128 * 4 * 4);
        let (k, v) = fill(&mut c, 230);
        assert_eq!((c.len(), k.dim(2).unwrap()), (300, 300));
        assert_eq!(
            k.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            rows(0, 300).flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        assert_eq!(
            v.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            rows(1000, 300).flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn a_clone_and_a_prefix_are_copies_that_appends_do_not_reach() {
        let mut a = KvCache::new(&config(1));
        fill(&mut a, 5);
        let mut b = a.clone();
        let mut p = a.prefix(3).unwrap();
        assert_eq!((b.len(), p.len()), (5, 3));
        // Different new positions in each: none sees another's.
        let (ka, _) = fill(&mut a, 1);
        let minus = Tensor::full(-7f32, (1, 1, 1, 4), &Device::Cpu).unwrap();
        b.append(0, &minus, &minus).unwrap();
        b.advance(1);
        let (kp, _) = fill(&mut p, 2);
        let last = |k: &Tensor, at: usize| {
            k.narrow(2, at, 1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        assert_eq!(last(&ka, 5), [20.0, 21.0, 22.0, 23.0]);
        assert_eq!(last(&kp, 3), [12.0, 13.0, 14.0, 15.0]);
        assert_eq!(last(&ka, 3), [12.0, 13.0, 14.0, 15.0]);
        let (kb, _) = b.append(0, &rows(0, 1), &rows(0, 1)).unwrap();
        assert_eq!(last(&kb, 5), [-7.0; 4]);
    }

    #[test]
    fn widens_a_strided_f16_view_as_to_dtype_does() {
        let mut c = KvCache::with_dtype(&config(1), DType::F16);
        let heads = |t: usize| {
            (Tensor::arange(0f32, (2 * t * 4) as f32, &Device::Cpu).unwrap() / 3.0)
                .unwrap()
                .reshape((1, 2, t, 4))
                .unwrap()
        };
        c.append(0, &heads(5), &heads(5)).unwrap();
        c.advance(5);
        // Two heads, a capacity of positions apart in the buffer.
        let (k, _) = c.append(0, &heads(2), &heads(2)).unwrap();
        assert_eq!(k.dims(), [1, 2, 7, 4]);
        let want = k.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(widened(&k).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), want);
    }

    #[test]
    fn stores_its_dtype() {
        let mut c = KvCache::with_dtype(&config(2), DType::F16);
        let (k, _) = fill(&mut c, 3);
        assert_eq!(k.dtype(), DType::F16);
        assert_eq!(c.bytes(), 2 * STEP * 4 * 2);
        assert_eq!(
            k.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            rows(0, 3).flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn strided_rows_written_and_a_prefix_copied_head_by_head_keep_every_value() {
        for dtype in [DType::F32, DType::F16] {
            let mut c = KvCache::with_dtype(&config(1), dtype);
            // 3 positions of 2 heads x 4, each row a part of a wider one (as a fused projection's).
            let data: Vec<f32> = (0..3 * 12).map(|i| i as f32 / 4.0).collect();
            let k = Rows { data: &data, start: 2, stride: 12, count: 3, width: 8 };
            let v = Rows { start: 3, ..k };
            c.write_rows(0, k, v, 2, 4).unwrap();
            c.advance(3);
            let value = |t: &Tensor, h: usize, p: usize| -> Vec<f32> {
                t.narrow(1, h, 1)
                    .unwrap()
                    .narrow(2, p, 1)
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            };
            let check = |c: &KvCache, positions: usize| {
                let (kb, vb) = c.buffers(0).unwrap();
                for p in 0..positions {
                    for h in 0..2 {
                        assert_eq!(
                            value(kb, h, p),
                            k.row(p)[h * 4..h * 4 + 4],
                            "{dtype:?} key {h} {p}"
                        );
                        assert_eq!(
                            value(vb, h, p),
                            v.row(p)[h * 4..h * 4 + 4],
                            "{dtype:?} value {h} {p}"
                        );
                    }
                }
            };
            check(&c, 3);
            // Into a used cache whose buffers hold more positions than the prefix: its old
            // contents beyond the prefix no longer count.
            let mut d = KvCache::with_dtype(&config(1), dtype);
            let old = vec![-1f32; 70 * 8];
            let old = Rows { data: &old, start: 0, stride: 8, count: 70, width: 8 };
            d.write_rows(0, old, old, 2, 4).unwrap();
            d.advance(70);
            c.copy_prefix_into(2, &mut d).unwrap();
            assert_eq!((d.len(), d.buffers(0).unwrap().0.dim(2).unwrap()), (2, 128));
            check(&d, 2);
        }
    }
}
