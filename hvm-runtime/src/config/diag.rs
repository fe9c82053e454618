//! Diagnostics: an error or a warning about one place in a config, printed
//! as `FILE:LINE: key 'KEY': MESSAGE` so that every problem names the file,
//! the line and the key it is about.
//!
//! A diagnostic quotes what the config says, and a config is input: its
//! control characters (an escape sequence, a carriage return, a bidi
//! override) are printed escaped (`\u{1b}`), never sent to the terminal.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// Where a statement came from: a config file, or a `key=value` argument
/// given after the file name on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A config file.
    File(PathBuf),
    /// The `key=value` overrides of `pvio create FILE key=value...`; the
    /// line number is the argument's position (1 for the first override).
    CommandLine,
}

/// A place in a config: the origin and a 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The file or the command line.
    pub origin: Origin,
    /// The line in the file, or the override argument's position.
    pub line: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::File(path) => write!(f, "{}:{}", path.display(), self.line),
            Origin::CommandLine => write!(f, "command line argument {}", self.line),
        }
    }
}

/// One problem (or warning) found in a config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Where.
    pub at: Location,
    /// The key of the statement it is about, when there is one.
    pub key: Option<String>,
    /// What is wrong, in words.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic about `key` at `at`.
    pub fn for_key(at: Location, key: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            at,
            key: Some(key.to_owned()),
            message: message.into(),
        }
    }

    /// A diagnostic not tied to a key (a statement that has none yet).
    pub fn bare(at: Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            at,
            key: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.at.to_string();
        let message = escape_controls(&self.message);
        match &self.key {
            Some(key) => write!(
                f,
                "{}: key '{}': {message}",
                escape_controls(&at),
                escape_controls(key)
            ),
            None => write!(f, "{}: {message}", escape_controls(&at)),
        }
    }
}

/// True for a character that must not reach a terminal as it is: C0 and
/// C1 controls, DEL, and the bidi overrides and isolates that reorder
/// what is shown.
fn is_hazard(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character escaped (`\n`, `\u{1b}`), for a
/// message that quotes input; borrowed when there is none.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_hazard) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_hazard(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// All the errors found in a config, reported together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} error{} in the config",
            if n == 1 { "" } else { "s" }
        )?;
        for d in &self.0 {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_line_key_message() {
        let d = Diagnostic::for_key(
            Location {
                origin: Origin::File("/etc/xen/winxp".into()),
                line: 12,
            },
            "memory",
            "expected a number, found string \"512M\"",
        );
        assert_eq!(
            d.to_string(),
            "/etc/xen/winxp:12: key 'memory': expected a number, found string \"512M\""
        );
    }

    #[test]
    fn command_line_and_bare() {
        let at = Location {
            origin: Origin::CommandLine,
            line: 2,
        };
        assert_eq!(
            Diagnostic::bare(at, "oops").to_string(),
            "command line argument 2: oops"
        );
    }

    #[test]
    fn control_characters_in_quoted_input_are_escaped() {
        let at = Location {
            origin: Origin::File("f\u{1b}]0;x\u{7}".into()),
            line: 3,
        };
        let d = Diagnostic::for_key(
            at,
            "disk",
            "unknown disk setting '\u{1b}[31mred\r\n\u{202e}txt'",
        );
        let shown = d.to_string();
        assert!(!shown.chars().any(is_hazard), "{shown:?}");
        assert_eq!(
            shown,
            "f\\u{1b}]0;x\\u{7}:3: key 'disk': unknown disk setting '\\u{1b}[31mred\\r\\n\\u{202e}txt'"
        );
        assert!(matches!(escape_controls("plain 'text'"), Cow::Borrowed(_)));
    }

    #[test]
    fn all_errors_listed() {
        let at = Location {
            origin: Origin::File("f".into()),
            line: 1,
        };
        let ds = Diagnostics(vec![
            Diagnostic::bare(at.clone(), "a"),
            Diagnostic::bare(at, "b"),
        ]);
        assert_eq!(ds.to_string(), "2 errors in the config\n  f:1: a\n  f:1: b");
    }
}
