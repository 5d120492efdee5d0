//! A source file's bytes as text, decoded line by line: a line that is not UTF-8 is decoded lossily
//! (U+FFFD for each bad sequence) so the rest of the file still parses, and the record holding it is
//! rejected with `not UTF-8: ...`, its raw bytes kept in base64 so that nothing is lost.

use std::borrow::Cow;
use std::collections::HashMap;

use base64::Engine as _;

use crate::ingest::record::{FileError, Parsed, RecordError};

/// A line that is not UTF-8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters, of the first invalid byte.
    pub column: usize,
    /// The first invalid byte.
    pub byte: u8,
}

impl BadLine {
    /// What is wrong, as said after the `file:line: ` of the record starting at `record_line`.
    pub fn message(&self, record_line: usize) -> String {
        let (byte, column) = (self.byte, self.column);
        if self.line == record_line {
            format!("not UTF-8: invalid byte 0x{byte:02X} at column {column}")
        } else {
            format!("not UTF-8: invalid byte 0x{byte:02X} at line {}, column {column}", self.line)
        }
    }
}

/// A file's text, with the lines that were not UTF-8.
#[derive(Debug)]
pub struct Decoded<'a> {
    /// The text without a leading byte-order mark, bad lines decoded lossily; same lines as the bytes.
    pub text: Cow<'a, str>,
    /// The bad lines, in file order.
    pub bad: Vec<BadLine>,
    /// The bytes, without the byte-order mark.
    bytes: &'a [u8],
    /// Where each line starts in `bytes` (filled only when some line is bad).
    starts: Vec<usize>,
}

/// Decodes a file's bytes; whole-file UTF-8 (the usual case) is borrowed as is.
pub fn decode(bytes: &[u8]) -> Decoded<'_> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Decoded { text: Cow::Borrowed(text), bad: Vec::new(), bytes, starts: Vec::new() };
    }
    let mut text = String::with_capacity(bytes.len() + 64);
    let (mut bad, mut starts) = (Vec::new(), Vec::new());
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            text.push('\n');
        }
        starts.push(line.as_ptr() as usize - bytes.as_ptr() as usize);
        match std::str::from_utf8(line) {
            Ok(s) => text.push_str(s),
            Err(e) => {
                let column = String::from_utf8_lossy(&line[..e.valid_up_to()]).chars().count() + 1;
                bad.push(BadLine { line: i + 1, column, byte: line[e.valid_up_to()] });
                text.push_str(&String::from_utf8_lossy(line));
            }
        }
    }
    Decoded { text: Cow::Owned(text), bad, bytes, starts }
}

impl Decoded<'_> {
    /// The raw bytes of lines `first..end` (1-based; `None`: to the end), without the final newline.
    fn lines(&self, first: usize, end: Option<usize>) -> &[u8] {
        let from = self.starts[first - 1];
        let to =
            end.and_then(|e| self.starts.get(e - 1).copied()).unwrap_or(self.bytes.len()).max(from);
        let mut raw = &self.bytes[from..to];
        while let [rest @ .., b'\n' | b'\r'] = raw {
            raw = rest;
        }
        raw
    }

    /// Rejects each record that holds a bad line (a record runs from its line to the next record's)
    /// with `not UTF-8: ...`, and returns the base64 of those records' raw bytes by record index.
    /// A bad line before every record (a CSV header) stops the file: `display:line: not UTF-8: ...`.
    pub fn reject_bad_lines(
        &self,
        records: &mut [Parsed],
        display: &str,
    ) -> Result<HashMap<usize, String>, FileError> {
        let mut raw = HashMap::new();
        if self.bad.is_empty() {
            return Ok(raw);
        }
        let mut order: Vec<usize> = (0..records.len()).collect();
        order.sort_by_key(|&i| records[i].line);
        for bad in &self.bad {
            let after = order.partition_point(|&i| records[i].line <= bad.line);
            let Some(start) = after.checked_sub(1).map(|k| records[order[k]].line) else {
                return Err(FileError {
                    path: display.to_string(),
                    line: bad.line,
                    message: bad.message(bad.line),
                });
            };
            let end = order.get(after).map(|&i| records[i].line);
            // Every record starting on that line (several when a JSON array sits on one line).
            let first = order[..after].partition_point(|&i| records[i].line < start);
            for &i in &order[first..after] {
                if raw.contains_key(&i) {
                    continue; // an earlier bad line of the same record named it
                }
                raw.insert(
                    i,
                    base64::engine::general_purpose::STANDARD.encode(self.lines(start, end)),
                );
                records[i].result = Err(RecordError::record(bad.message(start)));
            }
        }
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::examples::Example;

    fn parsed(line: usize) -> Parsed {
        Parsed { line, raw: String::new(), result: Ok(Example::default()) }
    }

    #[test]
    fn valid_text_is_borrowed() {
        let d = decode(b"\xEF\xBB\xBFab\ncd");
        assert!(matches!(d.text, Cow::Borrowed("ab\ncd")));
        assert!(d.bad.is_empty());
    }

    #[test]
    fn bad_lines_are_decoded_lossily_and_listed() {
        let d = decode(b"ok\n\xC3\xA9t\xE9\r\nend\xC3");
        assert_eq!(d.text, "ok\n\u{e9}t\u{fffd}\r\nend\u{fffd}");
        assert_eq!(
            d.bad,
            [
                BadLine { line: 2, column: 3, byte: 0xE9 },
                BadLine { line: 3, column: 4, byte: 0xC3 }
            ]
        );
        assert_eq!(d.bad[0].message(2), "not UTF-8: invalid byte 0xE9 at column 3");
        assert_eq!(d.bad[0].message(1), "not UTF-8: invalid byte 0xE9 at line 2, column 3");
    }

    #[test]
    fn the_record_holding_a_bad_line_is_rejected_with_its_bytes() {
        // Records at lines 1 and 2 (spanning 2..=3), and 5; line 3 is bad.
        let d = decode(b"a\nb\n\xFFc\n\nd\n");
        let mut records = vec![parsed(1), parsed(2), parsed(5)];
        let raw = d.reject_bad_lines(&mut records, "f.csv").unwrap();
        assert_eq!(raw.len(), 1);
        assert_eq!(raw[&1], base64::engine::general_purpose::STANDARD.encode(b"b\n\xFFc"));
        assert!(records[0].result.is_ok() && records[2].result.is_ok());
        assert_eq!(
            records[1].result.as_ref().unwrap_err().reason(),
            "not UTF-8: invalid byte 0xFF at line 3, column 1"
        );
        let err = d.reject_bad_lines(&mut [parsed(4)], "f.csv").unwrap_err();
        assert_eq!(err.to_string(), "f.csv:3: not UTF-8: invalid byte 0xFF at column 1");
    }
}
