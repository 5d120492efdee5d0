//! An answer's text as its tokens arrive: decoded a piece per token, cut before the first stop
//! string, and released to the reader only where it can no longer change. `generate` and the
//! server's batcher stream answers through it.

use super::FinishReason;
use crate::tokenizer::{TextStream, Tokenizer};
use crate::Result;

/// One answer's tokens and text.
pub struct AnswerText {
    stops: Vec<String>,
    /// The generated ids (no EOS).
    tokens: Vec<u32>,
    /// Their text so far, a piece per token, cut before a stop string.
    text: String,
    stream: TextStream,
    /// Bytes of `text` already released.
    released: usize,
    ended: bool,
}

impl AnswerText {
    /// An empty answer that ends at the first of `stops`.
    pub fn new(stops: &[String]) -> Self {
        AnswerText {
            stops: stops.to_vec(),
            tokens: Vec::new(),
            text: String::new(),
            stream: TextStream::new(true),
            released: 0,
            ended: false,
        }
    }

    /// Adds a generated token (not an end-of-sequence id). Returns whether the text now holds a
    /// stop string: it is cut before it, and the answer has ended with [`FinishReason::Stop`].
    pub fn push(&mut self, tokenizer: &Tokenizer, token: u32) -> Result<bool> {
        debug_assert!(!self.ended, "a token after the answer ended");
        self.tokens.push(token);
        if let Some(piece) = self.stream.next(tokenizer, &self.tokens)? {
            self.text.push_str(&piece);
        }
        let Some(cut) = self.stops.iter().filter_map(|s| self.text.find(s.as_str())).min() else {
            return Ok(false);
        };
        self.text.truncate(cut);
        self.ended = true;
        Ok(true)
    }

    /// Ends the answer for `reason`. After an end-of-sequence id or at the length limit, bytes
    /// held back for a character still incomplete come out (as U+FFFD); a stop string's cut stays.
    pub fn end(&mut self, tokenizer: &Tokenizer, reason: FinishReason) -> Result<()> {
        if reason != FinishReason::Stop && !self.ended {
            let rest = self.stream.finish(tokenizer, &self.tokens)?;
            self.text.push_str(&rest);
        }
        self.ended = true;
        Ok(())
    }

    /// The text that became final since the last call: none of a trailing incomplete character
    /// or of a suffix that could still grow into a stop string, all of the rest once ended.
    pub fn release(&mut self) -> &str {
        let end = if self.ended { self.text.len() } else { stable_prefix(&self.text, &self.stops) };
        if end <= self.released || !self.text.is_char_boundary(end) {
            return "";
        }
        let start = std::mem::replace(&mut self.released, end);
        &self.text[start..end]
    }

    /// The generated ids so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The whole text and the generated ids.
    pub fn into_parts(self) -> (String, Vec<u32>) {
        (self.text, self.tokens)
    }
}

/// How much of `text` can be shown: not a trailing partial UTF-8 character (decoded as U+FFFD)
/// and not a suffix that could still grow into a stop string.
fn stable_prefix(text: &str, stops: &[String]) -> usize {
    let mut end = text.trim_end_matches('\u{FFFD}').len();
    for s in stops {
        for (k, _) in s.char_indices().skip(1) {
            if text[..end].ends_with(&s[..k]) {
                end = end.min(text[..end].len() - k);
            }
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::byte_level_tokenizer_json;

    #[test]
    fn holds_back_possible_stop_strings_and_partial_bytes() {
        let stops = vec!["</answer>".to_string()];
        assert_eq!(stable_prefix("hello </ans", &stops), 6);
        assert_eq!(stable_prefix("hello", &stops), 5);
        assert_eq!(stable_prefix("caf\u{FFFD}", &[]), 3);
    }

    /// A byte-level tokenizer without merges, whose tokens are single bytes (`é` is two: `Ã©`
    /// in byte-level's alphabet).
    fn bytes() -> Tokenizer {
        let vocab = "abcdefghijklmnopqrstuvwxyz</>ĠÃ©"
            .chars()
            .enumerate()
            .map(|(i, c)| (c.to_string(), i.into()))
            .collect();
        Tokenizer::from_json(&byte_level_tokenizer_json(vocab, &[]).to_string()).unwrap()
    }

    fn ids(tok: &Tokenizer, text: &str) -> Vec<u32> {
        tok.encode(text, false).unwrap()
    }

    /// Pushes `text`'s tokens, collecting what each push releases; stops at a stop string.
    fn stream(tok: &Tokenizer, answer: &mut AnswerText, text: &str) -> (Vec<String>, bool) {
        let mut out = Vec::new();
        for id in ids(tok, text) {
            let stopped = answer.push(tok, id).unwrap();
            out.push(answer.release().to_string());
            if stopped {
                return (out, true);
            }
        }
        (out, false)
    }

    #[test]
    fn a_stop_string_cuts_the_text_and_is_never_released() {
        let tok = bytes();
        let mut answer = AnswerText::new(&["</a>".to_string()]);
        let (pieces, stopped) = stream(&tok, &mut answer, "ok </b> then </a> more");
        assert!(stopped);
        // "</" was held back until "</b" could no longer become "</a>".
        assert_eq!(pieces.concat(), "ok </b> then ");
        assert!(pieces.iter().all(|p| !p.contains("</a")));
        answer.end(&tok, FinishReason::Stop).unwrap();
        assert_eq!(answer.release(), "");
        let (text, tokens) = answer.into_parts();
        assert_eq!(text, "ok </b> then ");
        assert_eq!(tokens, ids(&tok, "ok </b> then </a>"));
    }

    #[test]
    fn a_held_back_suffix_comes_out_at_the_end() {
        let tok = bytes();
        let mut answer = AnswerText::new(&["</a>".to_string()]);
        let (pieces, stopped) = stream(&tok, &mut answer, "café </");
        assert!(!stopped);
        assert_eq!(pieces.concat(), "café ");
        // "é" is two byte tokens: nothing of it shows until it is whole.
        assert_eq!(pieces[3], "");
        assert_eq!(pieces[4], "é");
        answer.end(&tok, FinishReason::Length).unwrap();
        assert_eq!(answer.release(), "</");
        assert_eq!(answer.release(), "");
    }

    #[test]
    fn a_character_cut_short_at_the_end_shows_as_a_replacement() {
        let tok = bytes();
        let mut answer = AnswerText::new(&[]);
        let e_acute = ids(&tok, "é");
        answer.push(&tok, e_acute[0]).unwrap();
        assert_eq!(answer.release(), "");
        answer.end(&tok, FinishReason::Eos).unwrap();
        assert_eq!(answer.release(), "\u{FFFD}");
    }
}
