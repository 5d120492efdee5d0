//! The run of a `pair` stage: candidates and their judgments in, one DPO pair per prompt out,
//! with the counts (pairs, gold, silver, ties dropped, unpaired) as metrics.

use medalign_engine::{RunContext, StageError};

use super::config::{PairBy, PairConfig};
use crate::kinds::candidates::{read_candidates, read_responses, CANDIDATES};
use crate::kinds::judgments::read_judgments;
use crate::kinds::pairs::{write_pairs, Pair};
use crate::pair::rules::select_by_rules;
use crate::pair::select::{select, Thresholds};

/// Runs a stage with params `cfg`.
pub fn run(cfg: &PairConfig, cx: &mut RunContext<'_>) -> Result<(), StageError> {
    let check = cx.check_context().clone();
    let verified = cfg.read_verified(&check)?;
    let mut judgments = Vec::new();
    for input in cx.inputs("judgments") {
        judgments.extend(read_judgments(&input.table())?);
    }
    let candidates = if cx.inputs("responses").iter().all(|i| i.kind == CANDIDATES.name) {
        let mut all = Vec::new();
        for input in cx.inputs("responses") {
            all.extend(read_candidates(&input.table())?);
        }
        all
    } else {
        read_responses(cx.inputs("responses"))?
    };
    let s = match cfg.by {
        PairBy::Judge => {
            let t = Thresholds {
                margin: cfg.margin,
                gold_margin: cfg.gold_margin,
                safe_generator: cfg.safe_generator.clone(),
            };
            select(&candidates, &judgments, &verified, &t)
        }
        PairBy::Rules => {
            select_by_rules(&candidates, &judgments, &cfg.safe_generator, cfg.reference_pairs)
        }
    };
    write_pairs(&cx.output_table("pairs"), &s.pairs)?;
    let count = |f: &dyn Fn(&Pair) -> bool| s.pairs.iter().filter(|p| f(p)).count() as u64;
    cx.metric("prompts", s.prompts as u64);
    cx.metric("pairs", s.pairs.len() as u64);
    cx.metric("gold", count(&|p| p.tier == "gold"));
    cx.metric("silver", count(&|p| p.tier == "silver"));
    cx.metric("verified", count(&|p| p.verified));
    cx.metric("safety_pairs", count(&|p| p.kind == "safety"));
    cx.metric("ties_dropped", s.ties_dropped as u64);
    cx.metric("unpaired", s.unpaired as u64);
    if cfg.by == PairBy::Rules {
        cx.metric("rule_pairs", count(&|p| p.tier == "rule"));
        cx.metric("reference_pairs", count(&|p| p.tier == "reference"));
        cx.metric("already_right", s.already_right as u64);
        cx.metric("judge_compared", s.judge_compared as u64);
        if s.judge_compared > 0 {
            let agreement = s.judge_agrees as f64 / s.judge_compared as f64;
            cx.metric("judge_agreement", (agreement * 1e4).round() / 1e4);
        }
    }
    Ok(())
}
