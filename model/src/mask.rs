//! Additive attention masks: causal, left padding, sliding window.

use candle_core::{Device, Tensor};

use crate::Result;

/// The mask for `t` new queries after `past` cached positions, shape `(b, 1, t, past + t)`, or
/// `None` when every key is visible. Row `i` of batch `b` sees key `j` when `j <= past + i`,
/// `j >= left_pad[b]` (or `j` is the query itself, so padding rows stay finite) and, with a
/// window `w`, `past + i - j < w`.
pub fn attention_mask(
    t: usize,
    past: usize,
    left_pad: Option<&[usize]>,
    window: Option<usize>,
    device: &Device,
) -> Result<Option<Tensor>> {
    let s = past + t;
    let padded = left_pad.is_some_and(|p| p.iter().any(|&x| x > 0));
    let windowed = window.is_some_and(|w| s > w);
    if t == 1 && !padded && !windowed {
        return Ok(None);
    }
    let pads: Vec<usize> = match left_pad {
        Some(p) => p.to_vec(),
        None => vec![0],
    };
    let mut data = Vec::with_capacity(pads.len() * t * s);
    for &pad in &pads {
        for i in 0..t {
            let q = past + i;
            for j in 0..s {
                let causal = j <= q;
                let not_pad = j >= pad || j == q;
                let in_window = window.is_none_or(|w| q - j.min(q) < w);
                data.push(if causal && not_pad && in_window { 0f32 } else { f32::NEG_INFINITY });
            }
        }
    }
    Ok(Some(Tensor::from_vec(data, (pads.len(), 1, t, s), device)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_mask_hides_the_future() {
        let m = attention_mask(3, 0, None, None, &Device::Cpu).unwrap().unwrap();
        let v = m.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let visible: Vec<bool> = v.iter().map(|x| x.is_finite()).collect();
        assert_eq!(visible, [true, false, false, true, true, false, true, true, true]);
    }

    #[test]
    fn single_step_without_padding_needs_no_mask() {
        assert!(attention_mask(1, 10, None, None, &Device::Cpu).unwrap().is_none());
        assert!(attention_mask(1, 10, None, Some(4), &Device::Cpu).unwrap().is_some());
    }
}
