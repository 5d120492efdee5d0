//! Text normalization applied to every ingested string: Unicode NFC, whitespace, option labels.
//!
//! Nothing else is rewritten: case, punctuation and wording stay as the source has them.

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// NFC, `\r\n` and `\r` to `\n`, every run of horizontal whitespace (tabs, no-break and other Unicode
/// spaces) to one space, no spaces at line ends, at most one blank line in a row, trimmed.
pub fn text(s: &str) -> String {
    if s.is_ascii() && is_tidy_ascii(s.as_bytes()) {
        return s.to_string();
    }
    let nfc;
    let s = if s.is_ascii() || is_nfc_quick(s.chars()) == IsNormalized::Yes {
        s
    } else {
        nfc = s.nfc().collect::<String>();
        &nfc
    };
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    let mut newlines = 0usize;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let c = if c == '\r' {
            if chars.peek() == Some(&'\n') {
                chars.next();
            }
            '\n'
        } else {
            c
        };
        if c == '\n' || c == '\u{2028}' || c == '\u{2029}' {
            pending_space = false;
            newlines += 1;
        } else if c.is_whitespace() || c == '\u{200b}' || c == '\u{feff}' {
            pending_space = true;
        } else {
            if !out.is_empty() {
                if newlines > 0 {
                    out.push_str(if newlines > 1 { "\n\n" } else { "\n" });
                } else if pending_space {
                    out.push(' ');
                }
            }
            newlines = 0;
            pending_space = false;
            out.push(c);
        }
    }
    out
}

/// Whether ASCII text is already as [`text`] writes it: no whitespace at either end, and every run of
/// whitespace between words exactly one space, one newline or two newlines (the common case, copied as is).
fn is_tidy_ascii(b: &[u8]) -> bool {
    let space = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r');
    if b.first().is_some_and(|&c| space(c)) || b.last().is_some_and(|&c| space(c)) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if !space(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && space(b[i]) {
            i += 1;
        }
        if !matches!(&b[start..i], b" " | b"\n" | b"\n\n") {
            return false;
        }
    }
    true
}

/// Like [`text`], with an empty result read as absent.
pub fn optional(s: &str) -> Option<String> {
    let t = text(s);
    (!t.is_empty()).then_some(t)
}

/// An option label in any usual spelling (`B`, `b`, `(B)`, `B)`, `B.`, `Option B`) as an index from 0,
/// for options up to `count`.
pub fn label(s: &str, count: usize) -> Option<usize> {
    let t = s.trim();
    let t = t.strip_prefix("Option ").or_else(|| t.strip_prefix("option ")).unwrap_or(t);
    let t = t.trim_start_matches('(').trim_end_matches([')', '.', ':']).trim();
    let mut cs = t.chars();
    let c = cs.next()?;
    if cs.next().is_some() || !c.is_ascii_alphabetic() {
        return None;
    }
    let i = (c.to_ascii_uppercase() as u8 - b'A') as usize;
    (i < count).then_some(i)
}

/// The letter of option `i` (0 -> `A`).
pub fn letter(i: usize) -> String {
    char::from(b'A' + i as u8).to_string()
}

/// `A, B, C, D` for `count` options, as error messages list them.
pub fn letters(count: usize) -> String {
    (0..count).map(letter).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_collapsed_but_paragraphs_stay() {
        assert_eq!(
            text("  Fever\t and\u{00a0}cough \r\n\r\n\r\n\nsince  2 days \n"),
            "Fever and cough\n\nsince 2 days"
        );
        assert_eq!(text("line one  \nline two"), "line one\nline two");
        assert_eq!(text(" \n \t"), "");
    }

    #[test]
    fn tidy_ascii_is_copied_and_untidy_is_not() {
        for s in ["Fever and cough", "a\nb", "a\n\nb", "x", ""] {
            assert!(is_tidy_ascii(s.as_bytes()), "{s:?}");
        }
        for s in
            [" a", "a ", "a  b", "a\tb", "a \nb", "a\n b", "a\n\n\nb", "a\r\nb", "a\x0bb", "\n"]
        {
            assert!(!is_tidy_ascii(s.as_bytes()), "{s:?}");
            assert_ne!(text(s), s, "{s:?}");
        }
    }

    #[test]
    fn nfc_composes_accents() {
        // "e" + combining acute accent becomes the single code point U+00E9.
        assert_eq!(text("Me\u{301}nie\u{300}re disease"), "M\u{e9}ni\u{e8}re disease");
    }

    #[test]
    fn case_and_punctuation_are_kept() {
        assert_eq!(text("HbA1c < 7.0% (53 mmol/mol)?"), "HbA1c < 7.0% (53 mmol/mol)?");
    }

    #[test]
    fn labels_in_usual_spellings() {
        for s in ["B", "b", "(B)", "B)", "B.", " b ", "Option B"] {
            assert_eq!(label(s, 4), Some(1), "{s:?}");
        }
        assert_eq!(label("E", 4), None);
        assert_eq!(label("E", 5), Some(4));
        assert_eq!(label("BC", 4), None);
        assert_eq!(label("2", 4), None);
        assert_eq!(letters(4), "A, B, C, D");
    }
}
