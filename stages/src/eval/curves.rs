//! Training curves in the report: the train and validation loss of every adapter given to the eval
//! as `training` (SFT, DPO), read from the metrics table in its run record, as a Markdown summary
//! and an inline SVG line chart per stage.

use std::path::Path;

use medalign_engine::RUN_RECORD_DIR;

use crate::eval::html::escape;
use crate::kinds::adapter::{read_metrics, METRICS_FILE};

/// One stage's losses by optimizer step.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    /// The training stage's id.
    pub stage: String,
    /// `train/loss` per step.
    pub train: Vec<(u64, f64)>,
    /// `eval/loss` (held-out validation) per evaluation step; step 0 is before training.
    pub val: Vec<(u64, f64)>,
}

/// The curve of the adapter output in `dir`, or `None` when its run record has no metrics table
/// (an adapter made elsewhere).
pub fn read_curve(stage: &str, dir: &Path) -> Result<Option<Curve>, String> {
    let file = dir.join(RUN_RECORD_DIR).join(METRICS_FILE);
    if !file.is_file() {
        return Ok(None);
    }
    let rows = read_metrics(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let series = |tag: &str| {
        rows.iter()
            .filter(|r| r.tag == tag && r.value.is_finite())
            .map(|r| (r.step, r.value))
            .collect()
    };
    Ok(Some(Curve {
        stage: stage.to_string(),
        train: series("train/loss"),
        val: series("eval/loss"),
    }))
}

fn first_last(points: &[(u64, f64)]) -> String {
    match (points.first(), points.last()) {
        (Some(a), Some(b)) => format!("{:.4} (step {}) → {:.4} (step {})", a.1, a.0, b.1, b.0),
        _ => "-".into(),
    }
}

/// A Markdown table: per stage, the first and last train and validation loss.
pub fn markdown(curves: &[Curve]) -> String {
    if curves.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n## Training curves\n\nLoss per optimizer step (report.html draws them); validation is the train stage's held-out fraction.\n\n| stage | train loss | validation loss |\n|---|---|---|\n");
    for c in curves {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            c.stage,
            first_last(&c.train),
            first_last(&c.val)
        ));
    }
    out
}

/// A line chart of one stage: train loss in blue, validation loss in orange with points.
pub fn svg(c: &Curve) -> String {
    let (w, h, pad) = (420.0, 220.0, 44.0);
    let all: Vec<&(u64, f64)> = c.train.iter().chain(&c.val).collect();
    let max_step = all.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let lo = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = all.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) =
        if lo.is_finite() && hi > lo { (lo, hi) } else { (lo.min(0.0), lo.max(0.0) + 1.0) };
    let x = |s: u64| pad + (w - 2.0 * pad) * s as f64 / max_step;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * (v - lo) / (hi - lo);
    let path = |pts: &[(u64, f64)]| {
        pts.iter()
            .enumerate()
            .map(|(i, p)| format!("{}{:.1} {:.1}", if i == 0 { "M" } else { "L" }, x(p.0), y(p.1)))
            .collect::<String>()
    };
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11"><rect x="{pad}" y="{pad}" width="{}" height="{}" fill="none" stroke="#999"/><text x="{}" y="16" text-anchor="middle" font-size="13">{}</text>"##,
        w - 2.0 * pad,
        h - 2.0 * pad,
        w / 2.0,
        escape(&c.stage)
    );
    for (v, anchor) in [(lo, lo), (hi, hi)] {
        svg.push_str(&format!(
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{anchor:.3}</text>"#,
            pad - 4.0,
            y(v) + 4.0
        ));
    }
    svg.push_str(&format!(
        r#"<text x="{pad}" y="{:.1}" text-anchor="middle">0</text><text x="{:.1}" y="{:.1}" text-anchor="middle">step {}</text>"#,
        h - pad + 14.0,
        w - pad,
        h - pad + 14.0,
        max_step
    ));
    svg.push_str(&format!(r##"<path d="{}" stroke="#4C78A8" fill="none"/>"##, path(&c.train)));
    svg.push_str(&format!(
        r##"<path d="{}" stroke="#F58518" fill="none" stroke-dasharray="4 3"/>"##,
        path(&c.val)
    ));
    for p in &c.val {
        svg.push_str(&format!(r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#F58518"><title>step {}: {:.4}</title></circle>"##, x(p.0), y(p.1), p.0, p.1));
    }
    svg.push_str(&format!(
        r##"<text x="{:.1}" y="{:.1}" fill="#4C78A8">train</text><text x="{:.1}" y="{:.1}" fill="#F58518">validation</text></svg>"##,
        w - pad - 110.0,
        pad - 6.0,
        w - pad - 60.0,
        pad - 6.0
    ));
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::adapter::{write_metrics, MetricRow};

    #[test]
    fn reads_the_run_record_and_draws_both_series() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(RUN_RECORD_DIR)).unwrap();
        let row =
            |step, tag: &str, value| MetricRow { step, tag: tag.into(), value, wall_time: 0.0 };
        let rows = vec![
            row(0, "eval/loss", 2.5),
            row(1, "train/loss", 2.4),
            row(1, "train/lr", 1e-4),
            row(2, "train/loss", 2.0),
            row(2, "eval/loss", 2.1),
        ];
        write_metrics(&dir.path().join(RUN_RECORD_DIR).join(METRICS_FILE), &rows).unwrap();
        let c = read_curve("sft", dir.path()).unwrap().unwrap();
        assert_eq!(c.train, [(1, 2.4), (2, 2.0)]);
        assert_eq!(c.val, [(0, 2.5), (2, 2.1)]);
        let md = markdown(&[c.clone()]);
        assert!(
            md.contains(
                "| sft | 2.4000 (step 1) → 2.0000 (step 2) | 2.5000 (step 0) → 2.1000 (step 2) |"
            ),
            "{md}"
        );
        let svg = svg(&c);
        assert_eq!(svg.matches("<path").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(read_curve("x", &dir.path().join("none")).unwrap().is_none());
    }
}
