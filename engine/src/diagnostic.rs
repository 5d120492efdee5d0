//! Errors that point at a place in the manifest: `pipelines/x.yaml:12:5: message`.

use std::fmt;

use crate::manifest::yaml::Pos;

/// One problem in a manifest, with where it is and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The manifest path as the user gave it.
    pub file: String,
    /// Line and column.
    pub pos: Pos,
    /// The message.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.pos.line, self.pos.col, self.message)
    }
}

/// Every problem found in a manifest, in document order.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Adds a problem.
    pub fn push(&mut self, file: &str, pos: Pos, message: impl Into<String>) {
        self.0.push(Diagnostic { file: file.to_string(), pos, message: message.into() });
    }
    /// True when nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Sorts by position, keeping the order of problems found at the same place.
    pub fn sort(&mut self) {
        self.0.sort_by_key(|d| (d.pos.line, d.pos.col));
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}
