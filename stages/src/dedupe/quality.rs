//! Quality filters: length bounds, empty or truncated answers, an answer that is not among the choices.
//!
//! Each filter has a name, which is the `reason` of the rows it removes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ingest::normalize;
use crate::kinds::examples::Example;

/// Params of the quality filters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QualityConfig {
    /// Remove rows whose text (messages, context, choices) has fewer characters (`too_short`).
    #[serde(default = "default_min_chars")]
    pub min_chars: usize,
    /// Remove rows whose text has more characters (`too_long`); no bound when absent.
    #[serde(default)]
    pub max_chars: Option<usize>,
    /// Remove rows without an answer: no gold answer for `mcq` and `yes_no_maybe`, an empty reference
    /// reply for the others (`empty_answer`). A row with no reply turn at all is a prompt (an
    /// ingest source's `prompts_only`) and stays.
    #[serde(default = "yes")]
    pub drop_empty_answers: bool,
    /// Remove rows whose reference reply stops mid-sentence, ending in a letter or comma
    /// (`truncated_answer`). Off by default: short replies such as "Yes" end that way too.
    #[serde(default)]
    pub drop_truncated: bool,
    /// Remove `mcq` rows whose answer is not the label of one of their choices (`answer_not_in_choices`).
    #[serde(default = "yes")]
    pub drop_answer_not_in_choices: bool,
}

fn default_min_chars() -> usize {
    1
}

fn yes() -> bool {
    true
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            min_chars: default_min_chars(),
            max_chars: None,
            drop_empty_answers: true,
            drop_truncated: false,
            drop_answer_not_in_choices: true,
        }
    }
}

/// Reasons [`QualityConfig::reject`] can give, in the order they are tried.
pub const REASONS: [&str; 5] =
    ["too_short", "too_long", "empty_answer", "answer_not_in_choices", "truncated_answer"];

impl QualityConfig {
    /// The first filter that removes `e`, given its text length in characters.
    pub fn reject(&self, e: &Example, chars: usize) -> Option<&'static str> {
        if chars < self.min_chars {
            return Some("too_short");
        }
        if self.max_chars.is_some_and(|m| chars > m) {
            return Some("too_long");
        }
        let gold = matches!(e.task.as_str(), "mcq" | "yes_no_maybe");
        let reply = e.reference_reply().map(str::trim);
        if self.drop_empty_answers {
            let empty = if gold {
                e.answer.as_deref().is_none_or(|a| a.trim().is_empty())
            } else {
                reply.is_some_and(str::is_empty)
            };
            if empty {
                return Some("empty_answer");
            }
        }
        if self.drop_answer_not_in_choices && e.task == "mcq" {
            if let Some(a) = &e.answer {
                if normalize::label(a, e.choices.len()).is_none() {
                    return Some("answer_not_in_choices");
                }
            }
        }
        let reply = reply.unwrap_or("");
        if self.drop_truncated && !gold && reply.ends_with(|c: char| c.is_alphabetic() || c == ',')
        {
            return Some("truncated_answer");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::examples::Message;

    fn reply(text: &str) -> Example {
        Example {
            task: "instruction".into(),
            messages: vec![
                Message::new("user", "How should I take levothyroxine?"),
                Message::new("assistant", text),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn filters_name_their_reason() {
        let q = QualityConfig { drop_truncated: true, max_chars: Some(200), ..Default::default() };
        assert_eq!(q.reject(&reply("On an empty stomach, 30 minutes before breakfast."), 80), None);
        assert_eq!(
            q.reject(&reply("On an empty stomach, 30 minutes before"), 80),
            Some("truncated_answer")
        );
        assert_eq!(q.reject(&reply(""), 40), Some("empty_answer"));
        // A prompt without a reply turn (a prompts-only source) is not an empty answer.
        let prompt = Example { messages: reply("x").messages[..1].to_vec(), ..reply("x") };
        assert_eq!(q.reject(&prompt, 40), None);
        assert_eq!(q.reject(&reply("ok."), 300), Some("too_long"));
        assert_eq!(q.reject(&reply("ok."), 0), Some("too_short"));
        let mcq = Example {
            task: "mcq".into(),
            choices: vec!["a".into(), "b".into()],
            answer: Some("C".into()),
            ..Default::default()
        };
        assert_eq!(q.reject(&mcq, 50), Some("answer_not_in_choices"));
        let none = Example { answer: None, ..mcq };
        assert_eq!(q.reject(&none, 50), Some("empty_answer"));
    }
}
