//! One line per error, for the terminal and the logs: an error and its
//! causes joined (`a: b: c`), with the control characters of any quoted
//! input escaped. Every layer formats its errors here, once; nothing in
//! this module knows who made them.

/// The error and its causes on one line: `a: b: c`.
pub fn error_line(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    escape_quoted_input(&line)
}

/// `line` with every control character escaped (`\n`, `\u{1b}`): an
/// error quoting input (a path, a QEMU or supervisor reply) must not
/// move the cursor or start a line of its own. pvio's own lists ("N
/// settings cannot be planned:" and an indented item per line) keep
/// their line breaks: a newline followed by two spaces.
fn escape_quoted_input(line: &str) -> String {
    line.split("\n  ")
        .map(|part| crate::config::diag::escape_controls(part).into_owned())
        .collect::<Vec<_>>()
        .join("\n  ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_line_joins_causes() {
        let io = std::io::Error::other("inner");
        let e = std::io::Error::other(Wrapped(io));
        assert_eq!(error_line(&e), "outer: inner");
    }

    #[test]
    fn error_line_escapes_control_characters_of_quoted_input() {
        let e = std::io::Error::other("/img/a\u{1b}[31mred\rb\nfake: line does not exist");
        assert_eq!(
            error_line(&e),
            "/img/a\\u{1b}[31mred\\rb\\nfake: line does not exist"
        );
        // pvio's own indented lists keep their lines.
        let e = std::io::Error::other("2 settings cannot be planned:\n  a\u{7}\n  b");
        assert_eq!(
            error_line(&e),
            "2 settings cannot be planned:\n  a\\u{7}\n  b"
        );
    }

    #[derive(Debug)]
    struct Wrapped(std::io::Error);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("outer")
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
