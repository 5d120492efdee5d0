//! The text of a growing token sequence, a new piece per token (what a streaming server sends).
//!
//! Decoding the whole answer again at every token costs time in its length (120 us at 1024
//! tokens for SmolLM2's tokenizer, per sequence and step). Here each step decodes a window of the
//! last few tokens twice, with and without the newest, and takes what the newest added (the
//! offsets of Hugging Face's text-generation-inference): the window starts at a token boundary
//! the text already passed, so decoders that treat a sequence's first token specially (a
//! SentencePiece leading space) see the same start both times.

use super::Tokenizer;
use crate::Result;

/// Where the text of one growing sequence has got to.
#[derive(Debug, Clone)]
pub struct TextStream {
    /// The window's first token.
    prefix: usize,
    /// Tokens whose text has been given out.
    read: usize,
    skip_special_tokens: bool,
}

impl TextStream {
    /// A stream at the sequence's start.
    pub fn new(skip_special_tokens: bool) -> Self {
        Self { prefix: 0, read: 0, skip_special_tokens }
    }

    /// The text the tokens of `ids` after the ones already read add (`ids` is the whole
    /// sequence so far), or `None` while they add nothing or end inside a character (bytes of a
    /// character split over tokens decode to U+FFFD until the last one arrives).
    pub fn next(&mut self, tok: &Tokenizer, ids: &[u32]) -> Result<Option<String>> {
        let (before, now) = self.window(tok, ids)?;
        if now.len() <= before.len() || now.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        self.prefix = self.read;
        self.read = ids.len();
        Ok(Some(added(&before, &now)))
    }

    /// The text still held back at the end of the sequence: a character cut short, as U+FFFD.
    pub fn finish(&mut self, tok: &Tokenizer, ids: &[u32]) -> Result<String> {
        let (before, now) = self.window(tok, ids)?;
        self.prefix = ids.len();
        self.read = ids.len();
        Ok(if now.len() > before.len() { added(&before, &now) } else { String::new() })
    }

    /// The window's text without and with the unread tokens.
    fn window(&self, tok: &Tokenizer, ids: &[u32]) -> Result<(String, String)> {
        let before = tok.decode(&ids[self.prefix..self.read], self.skip_special_tokens)?;
        let now = tok.decode(&ids[self.prefix..], self.skip_special_tokens)?;
        Ok((before, now))
    }
}

/// What `now` adds to `before`. A decoder that rewrote the window's end (a clean-up of spaces
/// before punctuation) gives a `now` that does not start with `before`; the text past the
/// common prefix is then the addition.
fn added(before: &str, now: &str) -> String {
    if let Some(rest) = now.strip_prefix(before) {
        return rest.to_string();
    }
    let common = before
        .char_indices()
        .zip(now.chars())
        .take_while(|((_, a), b)| a == b)
        .last()
        .map_or(0, |((i, a), _)| i + a.len_utf8());
    now[common..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level BPE tokenizer whose tokens are single bytes: `a`, a space, and the two
    /// bytes of `é` (C3 A9, written `Ã` and `©` in byte-level's alphabet), plus an end token.
    fn bytes_tokenizer() -> Tokenizer {
        let vocab = [("a", 0), ("Ġ", 1), ("Ã", 2), ("©", 3), ("<end>", 4)]
            .into_iter()
            .map(|(t, id)| (t.to_string(), id.into()))
            .collect();
        Tokenizer::from_json(
            &crate::testing::byte_level_tokenizer_json(vocab, &[(4, "<end>")]).to_string(),
        )
        .unwrap()
    }

    fn pieces(tok: &Tokenizer, ids: &[u32]) -> (Vec<Option<String>>, String) {
        let mut s = TextStream::new(true);
        let got = (1..=ids.len()).map(|n| s.next(tok, &ids[..n]).unwrap()).collect();
        (got, s.finish(tok, ids).unwrap())
    }

    #[test]
    fn a_character_split_over_tokens_comes_out_whole_once_its_last_byte_arrives() {
        let tok = bytes_tokenizer();
        let (got, rest) = pieces(&tok, &[0, 2, 3, 1, 0]);
        let some = |s: &str| Some(s.to_string());
        assert_eq!(got, [some("a"), None, some("é"), some(" "), some("a")]);
        assert_eq!(rest, "");
    }

    #[test]
    fn the_pieces_make_the_whole_decoded_text_and_a_cut_character_ends_it() {
        let tok = bytes_tokenizer();
        let ids = [1, 0, 2, 3, 4, 2, 3, 2, 3, 1, 1, 0, 2];
        let (got, rest) = pieces(&tok, &ids);
        let streamed: String = got.into_iter().flatten().chain([rest.clone()]).collect();
        assert_eq!(streamed, tok.decode(&ids, true).unwrap());
        assert_eq!(rest, "\u{FFFD}");
    }

    #[test]
    fn additions_past_a_rewritten_end_start_where_the_texts_part() {
        assert_eq!(added("ab", "abc"), "c");
        assert_eq!(added("a ,", "a, b"), ", b");
        assert_eq!(added("é", "e"), "e");
    }
}
