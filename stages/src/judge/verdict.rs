//! Reading a judge's answer: the JSON object of `mode: json` (found even inside code fences or
//! prose, then validated metric by metric) and the score distribution of `mode: distribution`.
//! Nothing is guessed: an answer that does not validate is an error whose text is fed back.

use serde_json::Value;

/// One metric's score.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricScore {
    /// 1 to 5.
    pub score: i64,
    /// The probability-weighted score, in distribution mode.
    pub expected: Option<f64>,
    /// The judge's reason (distribution mode: the probabilities).
    pub rationale: String,
}

/// Parses a `mode: json` answer, which must score every metric in `metrics` from 1 to 5.
pub fn parse_json_verdict(text: &str, metrics: &[&str]) -> Result<Vec<MetricScore>, String> {
    let object = extract_object(text).ok_or("the reply holds no JSON object")?;
    let v: Value =
        serde_json::from_str(object).map_err(|e| format!("the JSON object does not parse: {e}"))?;
    let map = v.as_object().ok_or("expected a JSON object")?;
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for &name in metrics {
        let Some(entry) = map.get(name) else {
            problems.push(format!("key {name:?} is missing"));
            continue;
        };
        let score = match entry.get("score") {
            Some(Value::Number(n)) => {
                n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            }
            Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        let rationale = entry.get("rationale").and_then(Value::as_str).map(str::trim).unwrap_or("");
        match score {
            Some(s @ 1..=5) if !rationale.is_empty() => {
                out.push(MetricScore { score: s, expected: None, rationale: rationale.to_string() })
            }
            Some(1..=5) => problems.push(format!("{name}.rationale must be a non-empty string")),
            _ => problems.push(format!(
                "{name}.score must be an integer from 1 to 5, got {}",
                entry.get("score").unwrap_or(&Value::Null)
            )),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("; "))
    }
}

/// The text between the first `{` and the last `}` (code fences and prose around it are ignored).
fn extract_object(text: &str) -> Option<&str> {
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    (end > start).then(|| &text[start..=end])
}

/// The user turn that asks a judge to answer again after `error`.
pub fn feedback(error: &str) -> String {
    format!(
        "Your reply could not be used: {error}. Reply again with only the JSON object, one key per metric, \
         each with an integer \"score\" from 1 to 5 and a one-sentence \"rationale\"."
    )
}

/// Parses a `mode: distribution` answer: five probabilities of the scores 1 to 5.
pub fn parse_distribution(text: &str) -> Result<MetricScore, String> {
    let p: Vec<f64> =
        serde_json::from_str(text).map_err(|e| format!("score distribution {text:?}: {e}"))?;
    let total: f64 = p.iter().sum();
    if p.len() != 5 || !(total > 0.0) || p.iter().any(|x| !(*x >= 0.0)) {
        return Err(format!("score distribution {text:?}: expected 5 probabilities"));
    }
    let (best, _) = p
        .iter()
        .enumerate()
        .fold((0, f64::MIN), |acc, (i, &x)| if x > acc.1 { (i, x) } else { acc });
    let expected = p.iter().enumerate().map(|(i, x)| (i + 1) as f64 * x).sum::<f64>() / total;
    let shown: Vec<String> = p.iter().map(|x| format!("{x:.2}")).collect();
    Ok(MetricScore {
        score: best as i64 + 1,
        expected: Some((expected * 1e4).round() / 1e4),
        rationale: format!("p(1..5) = {}", shown.join(" ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_verdicts_are_found_and_validated() {
        let text = "Sure!\n```json\n{\"empathy\": {\"score\": 4, \"rationale\": \"Kind.\"}, \"harmfulness\": {\"score\": \"1\", \"rationale\": \"Safe.\"}}\n```";
        let v = parse_json_verdict(text, &["empathy", "harmfulness"]).unwrap();
        assert_eq!((v[0].score, v[1].score, v[0].rationale.as_str()), (4, 1, "Kind."));
        let err = parse_json_verdict(
            "{\"empathy\": {\"score\": 7, \"rationale\": \"x\"}}",
            &["empathy", "harmfulness"],
        )
        .unwrap_err();
        assert_eq!(
            err,
            "empathy.score must be an integer from 1 to 5, got 7; key \"harmfulness\" is missing"
        );
        assert_eq!(
            parse_json_verdict("I think 4.", &["empathy"]).unwrap_err(),
            "the reply holds no JSON object"
        );
        assert!(parse_json_verdict("{\"empathy\": {\"score\": 3}}", &["empathy"])
            .unwrap_err()
            .contains("rationale"));
        assert!(parse_json_verdict("{empathy: 3}", &["empathy"])
            .unwrap_err()
            .starts_with("the JSON object does not parse"));
    }

    #[test]
    fn distributions_give_argmax_and_expectation() {
        let s = parse_distribution("[0.1,0.1,0.2,0.5,0.1]").unwrap();
        assert_eq!(s.score, 4);
        assert!((s.expected.unwrap() - 3.4).abs() < 1e-9);
        assert!(parse_distribution("[1,2]").is_err());
    }
}
