//! The rows of a CSV file, each with its line, its fields and its text as written, after a check
//! that every quote closes where it should (the csv reader would otherwise merge rows silently).

use crate::ingest::record::{FileError, FileInput};

/// One CSV row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvRow<'a> {
    /// 1-based line where the row starts.
    pub line: usize,
    /// Its fields.
    pub fields: Vec<String>,
    /// The row as written in the file (several lines when a quoted field holds newlines).
    pub text: &'a str,
}

/// Reads every row of a CSV text (the header row too, if any); blank rows are skipped.
pub fn csv_rows<'a>(input: &FileInput<'a>) -> Result<Vec<CsvRow<'a>>, FileError> {
    check_quotes(input)?;
    let text = input.text;
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    // (line, start byte, fields) of every record, blank ones too: a row's text ends where the next begins.
    let mut records = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line() as usize).unwrap_or(1);
            input.error(line, format!("invalid CSV: {e}"))
        })?;
        let (line, start) =
            rec.position().map_or((1, 0), |p| (p.line() as usize, p.byte() as usize));
        // The reader's position is where the previous row ended: before the `\n` of a `\r\n` and
        // before blank lines. The row itself starts after them.
        let lead = text.as_bytes()[start.min(text.len())..]
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n');
        let (lead, newlines) = lead.fold((0, 0), |(n, l), &b| (n + 1, l + usize::from(b == b'\n')));
        let (line, start) = (line + newlines, start + lead);
        let blank = rec.len() == 1 && rec[0].trim().is_empty();
        records.push((
            line,
            start,
            (!blank).then(|| rec.iter().map(str::to_string).collect::<Vec<_>>()),
        ));
    }
    let ends: Vec<usize> = records.iter().skip(1).map(|r| r.1).chain([text.len()]).collect();
    Ok(records
        .into_iter()
        .zip(ends)
        .filter_map(|((line, start, fields), end)| {
            let text = text.get(start..end.max(start)).unwrap_or("").trim_end_matches(['\r', '\n']);
            Some(CsvRow { line, fields: fields?, text })
        })
        .collect())
}

/// Where the scan of [`check_quotes`] is within a field.
#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    /// At the start of a field.
    Start,
    /// In a field that does not start with a quote (quotes in it are plain characters).
    Unquoted,
    /// In a quoted field.
    Quoted,
    /// Just after a quote in a quoted field: it closes the field unless another quote follows.
    Quote,
    /// After the closing quote, before the next comma or newline.
    Closed,
}

/// Fails on a quote that opens a field and never closes, or that closes on a later line right before
/// more text: a missing closing quote, with the next quote in the file taken for it. Names the line
/// where the quote opened. (A quoted field that closes before text on its own line is left to the
/// csv reader, which keeps the text: no row is merged there.)
fn check_quotes(input: &FileInput<'_>) -> Result<(), FileError> {
    let (mut at, mut line, mut opened) = (At::Start, 1, 0);
    for &b in input.text.as_bytes() {
        at = match (at, b) {
            (At::Quoted, b'"') => At::Quote,
            (At::Quoted, _) => At::Quoted,
            (At::Quote, b'"') => At::Quoted,
            (At::Start, b'"') => {
                opened = line;
                At::Quoted
            }
            (_, b',' | b'\n' | b'\r') => At::Start,
            (At::Quote, _) if line > opened => {
                let msg = format!("invalid CSV: quote opened on this line is not closed before line {line}, where a quote is followed by text");
                return Err(input.error(opened, msg));
            }
            (At::Quote | At::Closed, _) => At::Closed,
            (At::Start | At::Unquoted, _) => At::Unquoted,
        };
        if b == b'\n' {
            line += 1;
        }
    }
    if at == At::Quoted {
        return Err(input.error(opened, "invalid CSV: quote opened on this line is never closed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Result<Vec<CsvRow<'_>>, String> {
        csv_rows(&FileInput { display: "f.csv", text, stem: "f" }).map_err(|e| e.to_string())
    }

    #[test]
    fn rows_keep_their_text() {
        let text = "a,b\r\n\n1,\"two\nlines\"\r\n\n  \n3,\"say \"\"hi\"\"\",x\n4,5\" tall";
        let got = rows(text).unwrap();
        let view: Vec<_> = got.iter().map(|r| (r.line, r.text, r.fields.len())).collect();
        assert_eq!(
            view,
            [
                (1, "a,b", 2),
                (3, "1,\"two\nlines\"", 2),
                (7, "3,\"say \"\"hi\"\"\",x", 3),
                (8, "4,5\" tall", 2)
            ]
        );
        assert_eq!(got[1].fields[1], "two\nlines");
        assert_eq!(got[2].fields[1], "say \"hi\"");
        let lines: Vec<_> =
            rows("a,b\r\nc,d\r\n\r\ne,f\r\n").unwrap().iter().map(|r| (r.line, r.text)).collect();
        assert_eq!(lines, [(1, "a,b"), (2, "c,d"), (4, "e,f")]);
    }

    #[test]
    fn unclosed_quotes_name_the_line_they_opened() {
        assert_eq!(
            rows("a,b\n1,\"x\n2,y\n").unwrap_err(),
            "f.csv:2: invalid CSV: quote opened on this line is never closed"
        );
        assert_eq!(
            rows("a,b\n1,\"x\n2,y\n3,\"z\"\n").unwrap_err(),
            "f.csv:2: invalid CSV: quote opened on this line is not closed before line 4, where a quote is followed by text"
        );
        // On one line, a quote followed by text merges nothing: the csv reader keeps it, as before.
        assert_eq!(rows("1,\"x\"y,2\n").unwrap()[0].fields, ["1", "xy", "2"]);
    }
}
