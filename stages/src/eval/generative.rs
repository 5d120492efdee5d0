//! Generative mode, for instruction-tuned models: the question goes through the chat template,
//! the model answers greedily, and the answer is read out of the reply (an option letter, an
//! option's text, or yes/no/maybe). Also the batched greedy generation the refusal and
//! medication-safety suites use.

use medalign_model::{generate, GenerationConfig, LanguageModel, Message, SamplingParams};

use crate::eval::template::Doc;

/// The user turn for a benchmark item: the harness prompt without its trailing `Answer:`, and
/// what form the answer should take.
pub fn chat_question(doc: &Doc) -> String {
    let body = doc.text.strip_suffix("Answer:").unwrap_or(&doc.text).trim_end();
    let ask = if doc.choices == doc.options {
        format!("Answer with one word: {}.", doc.choices.join(", "))
    } else {
        "Answer with the letter of the correct option.".to_string()
    };
    format!("{}{body}\n\n{ask}", doc.template.description())
}

/// Greedy replies to single-turn prompts, `batch` prompts per generation call, calling
/// `progress` with the number done after each batch.
pub fn replies(
    lm: &LanguageModel,
    prompts: &[String],
    max_new_tokens: usize,
    batch: usize,
    progress: &mut dyn FnMut(usize),
) -> medalign_model::Result<Vec<String>> {
    let cfg = GenerationConfig {
        max_new_tokens,
        sampling: SamplingParams { temperature: 0.0, ..Default::default() },
        stop: Vec::new(),
        eos_ids: lm.eos_ids(),
    };
    let mut out = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(batch.max(1)) {
        let ids = chunk
            .iter()
            .map(|p| lm.chat_prompt_ids(&[Message::new("user", p.as_str())]))
            .collect::<medalign_model::Result<Vec<_>>>()?;
        let gens = generate(&lm.model, &lm.tokenizer, &ids, &cfg, &mut |_| true)?;
        out.extend(gens.into_iter().map(|g| g.text));
        progress(out.len());
    }
    Ok(out)
}

/// Reads the chosen index out of a reply to `doc`, or `None` when the reply names no option.
///
/// In order: `answer is X` / `answer: X`; a lone option letter (`B`, `(B)`, `B.`, `B)`) at the
/// start or in parentheses; the option text (or yes/no/maybe) that appears first in the reply.
pub fn extract_choice(reply: &str, doc: &Doc) -> Option<usize> {
    let text = reply.trim();
    let lower = text.to_lowercase();
    let letters = doc.choices != doc.options;
    if letters {
        for cue in ["answer is", "answer:", "correct option is", "option"] {
            if let Some(at) = lower.find(cue) {
                if let Some(i) = letter_at(&text[at + cue.len()..], doc.choices.len(), false) {
                    return Some(i);
                }
            }
        }
        if let Some(i) = letter_at(text, doc.choices.len(), true) {
            return Some(i);
        }
        let bytes = text.as_bytes();
        for (p, _) in text.match_indices('(') {
            if let Some(i) = letter_at(&text[p + 1..], doc.choices.len(), false) {
                if bytes.get(p + 2) == Some(&b')') {
                    return Some(i);
                }
            }
        }
    }
    first_mention(&lower, &doc.options)
}

/// An option letter at the start of `s` (after spaces, `*`, `(`), standing alone; `strict` also
/// wants punctuation or the end after it, so that the article in `A patient...` is no answer.
fn letter_at(s: &str, n: usize, strict: bool) -> Option<usize> {
    let s = s.trim_start_matches(|c: char| c.is_whitespace() || c == '*' || c == '(' || c == '"');
    let mut chars = s.chars();
    let c = chars.next()?;
    let next = chars.next();
    let alone = match next {
        None => true,
        Some(c) if strict => matches!(c, '.' | ')' | ':' | ',' | '*' | '\n'),
        Some(c) => !c.is_alphanumeric(),
    };
    let idx = (c as u32).checked_sub('A' as u32)? as usize;
    (c.is_ascii_uppercase() && idx < n && alone).then_some(idx)
}

/// The option whose text occurs first in `lower` as a whole word or phrase.
fn first_mention(lower: &str, options: &[String]) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, opt) in options.iter().enumerate() {
        let needle = opt.trim().to_lowercase();
        if needle.is_empty() {
            continue;
        }
        for (at, _) in lower.match_indices(&needle) {
            let before = lower[..at].chars().next_back();
            let after = lower[at + needle.len()..].chars().next();
            let bounded = before.is_none_or(|c| !c.is_alphanumeric())
                && after.is_none_or(|c| !c.is_alphanumeric());
            if bounded {
                if best.is_none_or(|(p, _)| at < p) {
                    best = Some((at, i));
                }
                break;
            }
        }
    }
    best.map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::template::Template;

    fn mcq() -> Doc {
        Doc {
            template: Template::MedQa,
            text: "Question: q\nA. Aspirin\nB. Warfarin\nC. Heparin\nD. None\nAnswer:".into(),
            choices: ["A", "B", "C", "D"].map(String::from).to_vec(),
            gold: 1,
            options: ["Aspirin", "Warfarin", "Heparin", "None"].map(String::from).to_vec(),
        }
    }

    #[test]
    fn letters_and_texts_are_read() {
        let d = mcq();
        assert_eq!(extract_choice("B", &d), Some(1));
        assert_eq!(extract_choice("The answer is (C) Heparin.", &d), Some(2));
        assert_eq!(extract_choice("A patient on warfarin... so heparin", &d), Some(1));
        assert_eq!(extract_choice("**D.** None of these", &d), Some(3));
        assert_eq!(extract_choice("I cannot say.", &d), None);
        let y = Doc {
            template: Template::PubMedQa,
            text: String::new(),
            choices: vec!["yes".into(), "no".into(), "maybe".into()],
            gold: 0,
            options: vec!["yes".into(), "no".into(), "maybe".into()],
        };
        assert_eq!(extract_choice("No, it does not.", &y), Some(1));
        assert_eq!(extract_choice("Maybe; the evidence is weak, not a clear yes", &y), Some(2));
    }
}
