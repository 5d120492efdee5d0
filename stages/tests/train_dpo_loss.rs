//! The DPO losses equal TRL's formulas on hand-computed log-probabilities.

use candle_core::{Device, Tensor};
use medalign_stages::train::dpo::{dpo_losses, DpoLossKind, DpoParams};

fn softplus(x: f64) -> f64 {
    (1.0 + x.exp()).ln()
}

fn losses(loss: DpoLossKind, beta: f64, ls: f64) -> Vec<f32> {
    let t = |v: &[f32]| Tensor::new(v, &Device::Cpu).unwrap();
    // Pair 0: z = (-10 + 12) - (-11 + 11.5) = 1.5. Pair 1: z = (-20 + 18) - (-19 + 19) = -2.
    let (pc, pr, rc, rr) =
        (t(&[-10.0, -20.0]), t(&[-12.0, -18.0]), t(&[-11.0, -19.0]), t(&[-11.5, -19.0]));
    dpo_losses(&pc, &pr, &rc, &rr, &DpoParams { beta, loss, label_smoothing: ls })
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn close(got: &[f32], want: &[f64]) {
    for (g, w) in got.iter().zip(want) {
        assert!((*g as f64 - w).abs() < 1e-5, "got {got:?}, want {want:?}");
    }
}

#[test]
fn sigmoid_is_minus_log_sigmoid_of_beta_z() {
    close(&losses(DpoLossKind::Sigmoid, 0.1, 0.0), &[softplus(-0.15), softplus(0.2)]);
}

#[test]
fn sigmoid_with_label_smoothing_mixes_both_directions() {
    let want = |bz: f64| 0.9 * softplus(-bz) + 0.1 * softplus(bz);
    close(&losses(DpoLossKind::Sigmoid, 0.1, 0.1), &[want(0.15), want(-0.2)]);
}

#[test]
fn ipo_is_squared_distance_to_half_inverse_beta() {
    close(&losses(DpoLossKind::Ipo, 0.1, 0.0), &[(1.5f64 - 5.0).powi(2), (-2.0f64 - 5.0).powi(2)]);
}

#[test]
fn hinge_is_relu_of_one_minus_beta_z() {
    close(&losses(DpoLossKind::Hinge, 0.5, 0.0), &[0.25, 2.0]);
    close(&losses(DpoLossKind::Hinge, 1.0, 0.0), &[0.0, 3.0]);
}
