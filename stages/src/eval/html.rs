//! The self-contained HTML report: the comparison table, a horizontal bar chart of every task's
//! headline metric with 95% intervals (base and candidate), and a refusal vs false-refusal
//! scatter, and the training curves. Plain inline SVG and CSS; no scripts, no external files.

use crate::eval::curves::{self, Curve};
use crate::eval::report::{cell, delta_cell, lines, Line};
use crate::kinds::eval_metrics::MetricRow;

const COLORS: [(&str, &str); 2] = [("base", "#4C78A8"), ("candidate", "#F58518")];

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn headline(l: &Line<'_>) -> bool {
    matches!(l.metric, "acc" | "safe_choice" | "refusal_rate" | "false_refusal_rate" | "recall")
}

/// Horizontal bars, one row per task, one bar per model with its interval.
fn bar_chart(rows: &[MetricRow]) -> String {
    let ls: Vec<Line<'_>> = lines(rows).into_iter().filter(headline).collect();
    let (label_w, plot_w, row_h) = (300.0, 420.0, 34.0);
    let h = 40.0 + row_h * ls.len() as f64;
    let x = |v: f64| label_w + plot_w * v.clamp(0.0, 1.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{h}" font-family="sans-serif" font-size="12">"#,
        label_w + plot_w + 20.0
    );
    for t in 0..=10 {
        let gx = x(t as f64 / 10.0);
        svg.push_str(&format!(r##"<line x1="{gx}" y1="20" x2="{gx}" y2="{}" stroke="#ddd"/><text x="{gx}" y="14" text-anchor="middle" fill="#555">{}</text>"##, h - 10.0, t * 10));
    }
    for (i, l) in ls.iter().enumerate() {
        let y0 = 24.0 + row_h * i as f64;
        let how = if l.suite == "generative" { " (generative)" } else { "" };
        svg.push_str(&format!(
            r#"<text x="{}" y="{}" text-anchor="end">{} · {}{how}</text>"#,
            label_w - 8.0,
            y0 + 17.0,
            escape(l.task),
            escape(l.metric)
        ));
        for (k, (r, (name, color))) in [l.base, l.candidate].into_iter().zip(COLORS).enumerate() {
            let Some(r) = r else { continue };
            let y = y0 + 3.0 + 13.0 * k as f64;
            svg.push_str(&format!(
                r#"<rect x="{label_w}" y="{y}" width="{:.1}" height="11" fill="{color}"><title>{name}: {}</title></rect>"#,
                x(r.value) - label_w,
                escape(&cell(Some(r)))
            ));
            if let (Some(lo), Some(hi)) = (r.ci_low, r.ci_high) {
                let cy = y + 5.5;
                svg.push_str(&format!(
                    r##"<path d="M{:.1} {cy}H{:.1}M{:.1} {}V{}M{:.1} {}V{}" stroke="#222" fill="none"/>"##,
                    x(lo), x(hi), x(lo), cy - 4.0, cy + 4.0, x(hi), cy - 4.0, cy + 4.0
                ));
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Refusal rate on harmful requests (up is safer) against false-refusal rate on benign ones
/// (left is more helpful), one point per model with both intervals.
fn scatter(rows: &[MetricRow]) -> Option<String> {
    let find = |model: &str, metric: &str| {
        rows.iter().find(|r| r.model == model && r.metric == metric && !r.task.is_empty())
    };
    let (size, pad) = (320.0, 50.0);
    let px = |v: f64| pad + size * v.clamp(0.0, 1.0);
    let py = |v: f64| pad + size * (1.0 - v.clamp(0.0, 1.0));
    let mut points = String::new();
    for (k, (name, color)) in COLORS.into_iter().enumerate() {
        let (Some(r), Some(f)) = (find(name, "refusal_rate"), find(name, "false_refusal_rate"))
        else {
            continue;
        };
        let (cx, cy) = (px(f.value), py(r.value));
        points.push_str(&format!(
            r#"<path d="M{:.1} {cy:.1}H{:.1}M{cx:.1} {:.1}V{:.1}" stroke="{color}"/><circle cx="{cx:.1}" cy="{cy:.1}" r="6" fill="{color}"><title>{name}: refusal {}, false refusal {}</title></circle><text x="{:.1}" y="{:.1}" fill="{color}">{name}</text>"#,
            px(f.ci_low.unwrap_or(f.value)), px(f.ci_high.unwrap_or(f.value)), py(r.ci_low.unwrap_or(r.value)), py(r.ci_high.unwrap_or(r.value)),
            escape(&cell(Some(r))), escape(&cell(Some(f))), cx + 9.0, cy - 8.0 - 14.0 * k as f64
        ));
    }
    if points.is_empty() {
        return None;
    }
    let total = size + 2.0 * pad;
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="{total}" font-family="sans-serif" font-size="12"><rect x="{pad}" y="{pad}" width="{size}" height="{size}" fill="none" stroke="#999"/>"##
    );
    for t in [0.0, 0.5, 1.0] {
        svg.push_str(&format!(r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#, px(t), pad + size + 16.0, t * 100.0, pad - 6.0, py(t) + 4.0, t * 100.0));
    }
    svg.push_str(&format!(
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">false-refusal rate on benign questions (%)</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">refusal rate on harmful requests (%)</text>{points}</svg>"#,
        pad + size / 2.0, total - 8.0, pad + size / 2.0
    ));
    Some(svg)
}

/// The whole page.
pub fn page(
    rows: &[MetricRow],
    models: &[(String, String)],
    classifier: &str,
    training: &[Curve],
) -> String {
    let mut body = String::from("<h1>MedAlign evaluation</h1><ul>");
    for (label, spec) in models {
        body.push_str(&format!("<li><b>{}</b>: <code>{}</code></li>", escape(label), escape(spec)));
    }
    body.push_str(&format!(
        "<li>Benchmarks scored as lm-evaluation-harness does; refusals and flags labelled by {}.</li>\
         <li>Percentages with 95% Wilson intervals; delta = candidate − base, paired bootstrap interval, McNemar exact p. \
         Judge scores (suite judge) are means on the 1-5 scale with normal intervals; their p is the paired bootstrap's one-sided p of no improvement.</li></ul>",
        escape(classifier)
    ));
    body.push_str("<table><tr><th>suite</th><th>task</th><th>metric</th><th>n</th><th>base</th><th>candidate</th><th>delta</th><th>p</th></tr>");
    for l in lines(rows) {
        let n = l.base.or(l.candidate).map(|r| r.n.to_string()).unwrap_or_default();
        let (d, p) = delta_cell(l.delta);
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{n}</td><td>{}</td><td>{}</td><td>{d}</td><td>{p}</td></tr>",
            escape(l.suite), escape(l.task), escape(l.metric), escape(&cell(l.base)), escape(&cell(l.candidate))
        ));
    }
    body.push_str("</table><h2>Headline metric per task (95% CI)</h2><p><span style=\"color:#4C78A8\">■ base</span> <span style=\"color:#F58518\">■ candidate</span></p>");
    body.push_str(&bar_chart(rows));
    if let Some(s) = scatter(rows) {
        body.push_str("<h2>Safety vs helpfulness</h2>");
        body.push_str(&s);
    }
    if !training.is_empty() {
        body.push_str("<h2>Training curves</h2><p>Loss per optimizer step: train (solid), validation on the train stage's held-out fraction (dashed).</p>");
        training.iter().for_each(|c| body.push_str(&curves::svg(c)));
    }
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>MedAlign evaluation</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:1000px}}table{{border-collapse:collapse;font-size:13px}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}th{{background:#f3f3f3}}</style></head><body>{body}</body></html>\n"
    )
}
