//! The comparison report: one line per suite, task and metric with base and candidate side by side
//! (value and 95% interval), the delta with its interval and McNemar p-value. Written as
//! `report.md`, `table.txt` (what `medalign report <id>` prints), `report.html` and the resolved
//! params as `config.json`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::eval::curves::{self, Curve};
use crate::eval::html;
use crate::eval::judged::JUDGE_SUITE;
use crate::kinds::eval_metrics::{read_eval_metrics, MetricRow};

/// One line of the comparison: a suite, task and metric, and its row per model.
#[derive(Clone, Debug, Default)]
pub struct Line<'a> {
    /// Suite.
    pub suite: &'a str,
    /// Task or group.
    pub task: &'a str,
    /// Metric.
    pub metric: &'a str,
    /// The base row.
    pub base: Option<&'a MetricRow>,
    /// The candidate row.
    pub candidate: Option<&'a MetricRow>,
    /// The delta row.
    pub delta: Option<&'a MetricRow>,
}

fn suite_rank(s: &str) -> usize {
    [
        "benchmark",
        "generative",
        "medication_choice",
        "medication_flag",
        "refusal",
        "false_refusal",
        JUDGE_SUITE,
    ]
    .iter()
    .position(|x| *x == s)
    .unwrap_or(9)
}

/// The lines of the comparison, in report order (groups before their tasks).
pub fn lines(rows: &[MetricRow]) -> Vec<Line<'_>> {
    let mut by: BTreeMap<(usize, bool, &str, &str, &str), Line<'_>> = BTreeMap::new();
    for r in rows {
        let key = (
            suite_rank(&r.suite),
            !r.task.ends_with("_medical"),
            r.task.as_str(),
            r.metric.as_str(),
            r.suite.as_str(),
        );
        let line = by.entry(key).or_insert_with(|| Line {
            suite: &r.suite,
            task: &r.task,
            metric: &r.metric,
            ..Default::default()
        });
        match r.model.as_str() {
            "base" => line.base = Some(r),
            "candidate" => line.candidate = Some(r),
            _ => line.delta = Some(r),
        }
    }
    by.into_values().collect()
}

/// A value of `r`'s suite: rates in percent, judge scores on their 1-5 scale.
fn number(r: &MetricRow, x: f64) -> String {
    if r.suite == JUDGE_SUITE {
        format!("{x:.2}")
    } else {
        format!("{:.1}", 100.0 * x)
    }
}

/// `value [lo, hi]` (percent, or a 1-5 judge score).
pub fn cell(r: Option<&MetricRow>) -> String {
    match r {
        Some(r) => match (r.ci_low, r.ci_high) {
            (Some(lo), Some(hi)) => {
                format!("{} [{}, {}]", number(r, r.value), number(r, lo), number(r, hi))
            }
            _ => number(r, r.value),
        },
        None => "-".into(),
    }
}

/// The delta cell and its p-value.
pub fn delta_cell(r: Option<&MetricRow>) -> (String, String) {
    match r {
        Some(d) => {
            let sign = if d.value >= 0.0 { "+" } else { "" };
            let ci = match (d.ci_low, d.ci_high) {
                (Some(lo), Some(hi)) => format!(" [{}, {}]", number(d, lo), number(d, hi)),
                _ => String::new(),
            };
            (
                format!("{sign}{}{ci}", number(d, d.value)),
                d.p_value.map(|p| format!("{p:.3}")).unwrap_or_default(),
            )
        }
        None => ("-".into(), String::new()),
    }
}

/// The comparison as an aligned plain-text table (percentages, 95% intervals).
pub fn text_table(rows: &[MetricRow]) -> String {
    let mut cells = vec![["suite", "task", "metric", "n", "base", "candidate", "delta", "p"]
        .map(String::from)
        .to_vec()];
    for l in lines(rows) {
        let n = l.base.or(l.candidate).map(|r| r.n.to_string()).unwrap_or_default();
        let (d, p) = delta_cell(l.delta);
        cells.push(vec![
            l.suite.into(),
            l.task.into(),
            l.metric.into(),
            n,
            cell(l.base),
            cell(l.candidate),
            d,
            p,
        ]);
    }
    let widths: Vec<usize> =
        (0..8).map(|c| cells.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    cells
        .iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
                + "\n"
        })
        .collect()
}

/// The report as Markdown.
pub fn markdown(rows: &[MetricRow], models: &[(String, String)], classifier: &str) -> String {
    let mut md = String::from("# MedAlign evaluation\n\n");
    for (label, spec) in models {
        md.push_str(&format!("- **{label}**: `{spec}`\n"));
    }
    md.push_str(&format!(
        "- Benchmarks scored as lm-evaluation-harness does (log-likelihood of `\" \" + choice`; acc, acc_norm).\n\
         - Refusals and medication flags labelled by: {classifier}.\n\
         - Values in percent with 95% Wilson intervals; delta = candidate - base with a paired bootstrap \
         interval and McNemar's exact p-value. Judge scores (suite `judge`) are means on the 1-5 scale with \
         a normal interval; their p is the paired bootstrap's one-sided p of no improvement.\n\n"
    ));
    md.push_str("| suite | task | metric | n | base | candidate | delta | p |\n|---|---|---|---:|---|---|---|---:|\n");
    for l in lines(rows) {
        let n = l.base.or(l.candidate).map(|r| r.n.to_string()).unwrap_or_default();
        let (d, p) = delta_cell(l.delta);
        md.push_str(&format!(
            "| {} | {} | {} | {n} | {} | {} | {d} | {p} |\n",
            l.suite,
            l.task,
            l.metric,
            cell(l.base),
            cell(l.candidate)
        ));
    }
    md
}

/// Writes `report.md`, `table.txt`, `report.html` (with the training curves, when given) and
/// `config.json` into `dir`.
pub fn write(
    dir: &Path,
    rows: &[MetricRow],
    models: &[(String, String)],
    classifier: &str,
    curves: &[Curve],
    params: &serde_json::Value,
) -> Result<(), String> {
    let put = |name: &str, text: String| {
        std::fs::write(dir.join(name), text)
            .map_err(|e| format!("{}: {e}", dir.join(name).display()))
    };
    put("report.md", markdown(rows, models, classifier) + &curves::markdown(curves))?;
    put("table.txt", text_table(rows))?;
    put("report.html", html::page(rows, models, classifier, curves))?;
    put("config.json", serde_json::to_string_pretty(params).unwrap_or_default() + "\n")
}

/// The comparison table of an eval artifact, for `medalign report <id>`: `dir` is the stage's
/// artifact directory, or its `report` or `metrics` output.
pub fn report_table(dir: &Path) -> Result<String, String> {
    for candidate in [dir.join("table.txt"), dir.join("report").join("table.txt")] {
        if candidate.is_file() {
            return std::fs::read_to_string(&candidate)
                .map_err(|e| format!("{}: {e}", candidate.display()));
        }
    }
    for candidate in [dir.join("data.parquet"), dir.join("metrics").join("data.parquet")] {
        if candidate.is_file() {
            return Ok(text_table(&read_eval_metrics(&candidate).map_err(|e| e.to_string())?));
        }
    }
    Err(format!("{}: not an eval artifact (no table.txt or metrics table)", dir.display()))
}
