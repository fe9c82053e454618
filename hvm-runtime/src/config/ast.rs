//! What the parser produces: statements (`key = value`, `key += value`)
//! whose values remember the line they were written on.

use std::fmt;

use super::diag::Location;

/// A value in a config: a string, a number or a list of values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The value itself.
    pub kind: ValueKind,
    /// Where it starts: the file (or the command line) and the line.
    pub at: Location,
}

/// The three kinds of values the xl config language has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueKind {
    /// A quoted string, escapes already decoded.
    Str(String),
    /// A number (decimal, octal with a leading 0, or hex with 0x).
    Num(i64),
    /// `[ value, ... ]`, possibly nested.
    List(Vec<Value>),
}

impl ValueKind {
    /// The kind's name for messages: "a string", "a number", "a list".
    pub fn kind_name(&self) -> &'static str {
        match self {
            ValueKind::Str(_) => "a string",
            ValueKind::Num(_) => "a number",
            ValueKind::List(_) => "a list",
        }
    }
}

impl fmt::Display for Value {
    /// Describes the value for a message: `string "512M"`, `number 5`,
    /// `a list of 2 items`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ValueKind::Str(s) => write!(f, "string {s:?}"),
            ValueKind::Num(n) => write!(f, "number {n}"),
            ValueKind::List(items) if items.len() == 1 => f.write_str("a list of 1 item"),
            ValueKind::List(items) => write!(f, "a list of {} items", items.len()),
        }
    }
}

/// `=` or `+=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `key = value`: sets (or replaces) the key.
    Set,
    /// `key += value`: appends to a list or a string.
    Append,
}

/// One statement of a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The key, as written.
    pub key: String,
    /// `=` or `+=`.
    pub op: Op,
    /// The value.
    pub value: Value,
    /// The line the key is on.
    pub line: u32,
}
