//! Sums of f32 products in sixteen lanes, in an order fixed by the code: vectorized by the
//! compiler, and the same bits whatever the target features.

/// `a . b`: lane `l` sums the products at `l`, `l + 16`, ..., the lanes are added in a tree of
/// halvings and the tail past the last whole sixteen comes last.
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    // A tree of halvings: four vector adds instead of fifteen dependent scalar ones.
    let mut w = 16;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            acc[l] += acc[l + w];
        }
    }
    let mut total = acc[0];
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        total += x * y;
    }
    total
}
