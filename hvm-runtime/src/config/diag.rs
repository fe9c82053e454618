//! Diagnostics: an error or a warning about one place in a config, printed
//! as `FILE:LINE: key 'KEY': MESSAGE` so that every problem names the file,
//! the line and the key it is about.

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
        match &self.key {
            Some(key) => write!(f, "{}: key '{}': {}", self.at, key, self.message),
            None => write!(f, "{}: {}", self.at, self.message),
        }
    }
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
