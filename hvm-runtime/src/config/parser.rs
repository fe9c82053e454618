//! The xl config parser: statements `key = value` and `key += value`, each
//! ended by a newline or `;`; values are strings, numbers and lists
//! (`[ ... ]`, nested, spanning lines, with an optional trailing comma).
//!
//! Every error of a file is collected: after one, the parser skips to the
//! next line that starts a statement (`key =` or `key +=`) and goes on. A
//! list left open is reported at the line that opened it.
//!
//! Lists nest at most [`MAX_NESTING`] deep: an xl config needs two levels,
//! and a deeper one (a file built to exhaust the stack) is an error at the
//! line of the list that goes too deep.

use super::ast::{Op, Statement, Value, ValueKind};
use super::diag::{Diagnostic, Location, Origin};
use super::lexer::{lex, Tok, Token};

/// The deepest nesting of lists accepted (`[[...]]` is 2).
pub const MAX_NESTING: usize = 32;

/// Parses `text`; returns the statements that parsed and the errors of the
/// ones that did not.
pub fn parse(text: &str, origin: &Origin) -> (Vec<Statement>, Vec<Diagnostic>) {
    Parser {
        toks: lex(text),
        pos: 0,
        depth: 0,
        origin,
        errors: Vec::new(),
    }
    .run()
}

struct Parser<'a> {
    toks: Vec<Token>,
    pos: usize,
    /// How many lists the current value is inside.
    depth: usize,
    origin: &'a Origin,
    errors: Vec<Diagnostic>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    /// The line of the current token, or of the last one at the end.
    fn line(&self) -> u32 {
        self.toks
            .get(self.pos)
            .or_else(|| self.toks.last())
            .map_or(1, |t| t.line)
    }

    fn at(&self, line: u32) -> Location {
        Location {
            origin: self.origin.clone(),
            line,
        }
    }

    fn run(mut self) -> (Vec<Statement>, Vec<Diagnostic>) {
        let mut statements = Vec::new();
        loop {
            while matches!(self.peek(), Some(Tok::Newline | Tok::Semi)) {
                self.pos += 1;
            }
            let Some(tok) = self.peek().cloned() else {
                break;
            };
            let line = self.line();
            let start = self.pos;
            match tok {
                Tok::Ident(key) => match self.statement(&key, line) {
                    Ok(s) => statements.push(s),
                    Err(d) => {
                        self.errors.push(d);
                        self.recover(start);
                    }
                },
                other => {
                    let message = match other {
                        Tok::Error(e) => e,
                        other => {
                            format!("expected a key at the start of a statement, found {other}")
                        }
                    };
                    self.errors.push(Diagnostic::bare(self.at(line), message));
                    self.pos += 1;
                    self.recover(start);
                }
            }
        }
        (statements, self.errors)
    }

    /// True when the current token starts a statement on a line of its own:
    /// it follows a newline or `;` and is `word =` or `word +=`.
    fn at_statement_start(&self) -> bool {
        let after_end = self.pos == 0
            || matches!(
                self.toks.get(self.pos - 1).map(|t| &t.tok),
                Some(Tok::Newline | Tok::Semi)
            );
        let key = matches!(self.peek(), Some(Tok::Ident(_)));
        let op = matches!(
            self.toks.get(self.pos + 1).map(|t| &t.tok),
            Some(Tok::Assign | Tok::Append)
        );
        after_end && key && op
    }

    /// Skips to the next statement after an error in the statement that
    /// began at token `start`: to the first token after a newline or `;`
    /// outside the statement's brackets, or to a line that starts with
    /// `word =` even inside them (a list left open).
    fn recover(&mut self, start: usize) {
        let delta = |t: &Token| match t.tok {
            Tok::LBracket => 1,
            Tok::RBracket => -1,
            _ => 0,
        };
        let upto = self.pos.min(self.toks.len());
        let mut depth: i32 = self.toks[start.min(upto)..upto].iter().map(delta).sum();
        while let Some(t) = self.toks.get(self.pos) {
            let after_end = self.pos > start
                && matches!(
                    self.toks.get(self.pos - 1).map(|t| &t.tok),
                    Some(Tok::Newline | Tok::Semi)
                );
            if self.at_statement_start() || (after_end && depth <= 0) {
                break;
            }
            depth += delta(t);
            self.pos += 1;
        }
    }

    fn statement(&mut self, key: &str, line: u32) -> Result<Statement, Diagnostic> {
        self.pos += 1;
        let op = match self.peek().cloned() {
            Some(Tok::Assign) => Op::Set,
            Some(Tok::Append) => Op::Append,
            other => {
                let found = describe(other.as_ref());
                return Err(self.key_error(
                    key,
                    format!("expected '=' or '+=' after the key, found {found}"),
                ));
            }
        };
        self.pos += 1;
        let value = self.value(key)?;
        match self.peek() {
            None | Some(Tok::Newline | Tok::Semi) => Ok(Statement {
                key: key.to_owned(),
                op,
                value,
                line,
            }),
            Some(other) => {
                let message = match other {
                    Tok::Error(e) => e.clone(),
                    other => format!(
                        "expected the end of the statement (a newline or ';') after the value, found {other}"
                    ),
                };
                Err(self.key_error(key, message))
            }
        }
    }

    /// An error about `key` at the current token's line.
    fn key_error(&self, key: &str, message: String) -> Diagnostic {
        Diagnostic::for_key(self.at(self.line()), key, message)
    }

    fn value(&mut self, key: &str) -> Result<Value, Diagnostic> {
        let line = self.line();
        let kind = match self.peek().cloned() {
            Some(Tok::Str(s)) => ValueKind::Str(s),
            Some(Tok::Num(n)) => ValueKind::Num(n),
            Some(Tok::LBracket) if self.depth >= MAX_NESTING => {
                return Err(self.key_error(
                    key,
                    format!("lists are nested more than {MAX_NESTING} deep; an xl config needs two levels at most"),
                ));
            }
            Some(Tok::LBracket) => {
                self.pos += 1;
                self.depth += 1;
                let list = self.list(key, line);
                self.depth -= 1;
                return list;
            }
            Some(Tok::Ident(w)) => {
                return Err(self.key_error(
                    key,
                    format!("expected a value, found word `{w}` (strings need quotes: '{w}')"),
                ))
            }
            Some(Tok::Error(e)) => return Err(self.key_error(key, e)),
            other => {
                let found = describe(other.as_ref());
                return Err(self.key_error(
                    key,
                    format!("expected a value (a string, a number or a list), found {found}"),
                ));
            }
        };
        self.pos += 1;
        Ok(Value {
            kind,
            at: self.at(line),
        })
    }

    fn skip_newlines(&mut self) {
        while matches!(self.peek(), Some(Tok::Newline)) {
            self.pos += 1;
        }
    }

    /// The items of a list; `[` at `open` is already taken.
    fn list(&mut self, key: &str, open: u32) -> Result<Value, Diagnostic> {
        let unclosed = |p: &Self| {
            Diagnostic::for_key(
                p.at(open),
                key,
                "the list opened on this line is not closed by ']'".to_owned(),
            )
        };
        let mut items = Vec::new();
        loop {
            self.skip_newlines();
            match self.peek() {
                None => return Err(unclosed(self)),
                Some(Tok::RBracket) => {
                    self.pos += 1;
                    break;
                }
                Some(_) if self.at_statement_start() => return Err(unclosed(self)),
                Some(_) => {}
            }
            items.push(self.value(key)?);
            self.skip_newlines();
            match self.peek() {
                Some(Tok::Comma) => self.pos += 1,
                Some(Tok::RBracket) => {
                    self.pos += 1;
                    break;
                }
                None => return Err(unclosed(self)),
                Some(_) if self.at_statement_start() => return Err(unclosed(self)),
                Some(other) => {
                    let message = match other {
                        Tok::Error(e) => e.clone(),
                        other => format!("expected ',' or ']' after a list item, found {other}"),
                    };
                    return Err(self.key_error(key, message));
                }
            }
        }
        Ok(Value {
            kind: ValueKind::List(items),
            at: self.at(open),
        })
    }
}

fn describe(tok: Option<&Tok>) -> String {
    tok.map_or_else(|| "the end of the file".to_owned(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin::File("/etc/xen/t".into())
    }

    fn ok(text: &str) -> Vec<Statement> {
        let (s, e) = parse(text, &origin());
        assert!(e.is_empty(), "{text}: {e:?}");
        s
    }

    fn errors(text: &str) -> Vec<String> {
        parse(text, &origin())
            .1
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    fn v(kind: ValueKind, line: u32) -> Value {
        Value {
            kind,
            at: Location {
                origin: origin(),
                line,
            },
        }
    }

    fn s(text: &str, line: u32) -> Value {
        v(ValueKind::Str(text.into()), line)
    }

    fn n(num: i64, line: u32) -> Value {
        v(ValueKind::Num(num), line)
    }

    fn l(items: Vec<Value>, line: u32) -> Value {
        v(ValueKind::List(items), line)
    }

    #[test]
    fn set_and_append() {
        let st = ok("memory = 512\nname += 'x'");
        assert_eq!(st.len(), 2);
        assert_eq!(
            (st[0].key.as_str(), st[0].op, &st[0].value, st[0].line),
            ("memory", Op::Set, &n(512, 1), 1)
        );
        assert_eq!(
            (st[1].key.as_str(), st[1].op, &st[1].value, st[1].line),
            ("name", Op::Append, &s("x", 2), 2)
        );
    }

    #[test]
    fn statements_end_with_newline_or_semicolon() {
        let st = ok("a=1; b=2;c='x'\n;;\n\nd=3");
        let keys: Vec<&str> = st.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c", "d"]);
        assert_eq!(st[3].line, 4);
    }

    #[test]
    fn comments_and_blank_lines() {
        let st = ok("# header\n\n  memory = 1 # trailing\n# end");
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].line, 3);
    }

    #[test]
    fn lists_nested_multiline_trailing_comma() {
        let st = ok("disk = [\n  'a',\n  'b', # c\n  [ 1, [] ],\n]\nx = []");
        assert_eq!(
            st[0].value,
            l(
                vec![s("a", 2), s("b", 3), l(vec![n(1, 4), l(vec![], 4)], 4)],
                1
            )
        );
        assert_eq!(st[1].value, l(vec![], 6));
    }

    #[test]
    fn bracket_may_open_on_the_next_line() {
        // Newlines are not allowed between '=' and the value: xl has none.
        let e = errors("disk =\n[ 'a' ]");
        assert_eq!(
            e,
            ["/etc/xen/t:1: key 'disk': expected a value (a string, a number or a list), found the end of the line",
             "/etc/xen/t:2: expected a key at the start of a statement, found '['"]
        );
    }

    #[test]
    fn missing_equals() {
        assert_eq!(
            errors("memory 512"),
            ["/etc/xen/t:1: key 'memory': expected '=' or '+=' after the key, found number 512"]
        );
        assert_eq!(
            errors("memory"),
            ["/etc/xen/t:1: key 'memory': expected '=' or '+=' after the key, found the end of the file"]
        );
    }

    #[test]
    fn missing_value() {
        assert_eq!(
            errors("memory =\nvcpus = 2"),
            ["/etc/xen/t:1: key 'memory': expected a value (a string, a number or a list), found the end of the line"]
        );
        assert_eq!(
            errors("memory ="),
            ["/etc/xen/t:1: key 'memory': expected a value (a string, a number or a list), found the end of the file"]
        );
    }

    #[test]
    fn bare_words_need_quotes() {
        assert_eq!(
            errors("on_crash = destroy"),
            ["/etc/xen/t:1: key 'on_crash': expected a value, found word `destroy` (strings need quotes: 'destroy')"]
        );
    }

    #[test]
    fn junk_after_the_value() {
        assert_eq!(
            errors("memory = 512 256\nvcpus = 1"),
            ["/etc/xen/t:1: key 'memory': expected the end of the statement (a newline or ';') after the value, found number 256"]
        );
    }

    #[test]
    fn not_a_key() {
        assert_eq!(
            errors("= 5\n'x' = 1\nok = 1"),
            [
                "/etc/xen/t:1: expected a key at the start of a statement, found '='",
                "/etc/xen/t:2: expected a key at the start of a statement, found string \"x\""
            ]
        );
        assert_eq!(errors("@"), ["/etc/xen/t:1: unexpected character '@'"]);
    }

    #[test]
    fn lexer_errors_carry_the_key() {
        assert_eq!(
            errors("memory = 512M"),
            ["/etc/xen/t:1: key 'memory': invalid decimal number `512M` (numbers take no unit; quote it if it is a string)"]
        );
        assert_eq!(
            errors("name = 'abc\nvcpus = 1"),
            ["/etc/xen/t:1: key 'name': string not closed: the line ends before the closing '"]
        );
        assert_eq!(
            errors("name = 'a' @"),
            ["/etc/xen/t:1: key 'name': unexpected character '@'"]
        );
        assert_eq!(
            errors("name += 'a\\q'"),
            ["/etc/xen/t:1: key 'name': unknown escape \\q in a string"]
        );
    }

    #[test]
    fn list_errors() {
        assert_eq!(
            errors("disk = [ 'a' 'b' ]\nvcpus = 1"),
            ["/etc/xen/t:1: key 'disk': expected ',' or ']' after a list item, found string \"b\""]
        );
        assert_eq!(
            errors("disk = [ 'a', , ]"),
            ["/etc/xen/t:1: key 'disk': expected a value (a string, a number or a list), found ','"]
        );
        assert_eq!(
            errors("disk = [ 'a',\n  0x ]"),
            ["/etc/xen/t:2: key 'disk': invalid hex number `0x`"]
        );
        assert_eq!(
            errors("disk = [ 'a', 'b' 0x ]"),
            ["/etc/xen/t:1: key 'disk': invalid hex number `0x`"]
        );
    }

    #[test]
    fn unclosed_list_is_reported_where_it_opened_and_parsing_goes_on() {
        let (st, e) = parse("disk = [ 'a',\n 'b'\nname = 'x'\nvcpus = 2", &origin());
        let e: Vec<String> = e.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            e,
            ["/etc/xen/t:1: key 'disk': the list opened on this line is not closed by ']'"]
        );
        let keys: Vec<&str> = st.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["name", "vcpus"]);
        assert_eq!(
            errors("disk = [ 'a',\n"),
            ["/etc/xen/t:1: key 'disk': the list opened on this line is not closed by ']'"]
        );
        assert_eq!(
            errors("disk = [ 'a'"),
            ["/etc/xen/t:1: key 'disk': the list opened on this line is not closed by ']'"]
        );
        assert_eq!(
            errors("disk = [\nname = 'x'"),
            ["/etc/xen/t:1: key 'disk': the list opened on this line is not closed by ']'"]
        );
    }

    #[test]
    fn all_errors_of_a_file_are_reported() {
        let text = "memory = 512M\nname = 'ok'\nvcpus = \nvif = [ 'a' 'b' ]\nboot = d\nacpi = 1";
        let (st, e) = parse(text, &origin());
        let lines: Vec<u32> = e.iter().map(|d| d.at.line).collect();
        assert_eq!(lines, [1, 3, 4, 5]);
        let keys: Vec<&str> = st.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["name", "acpi"]);
    }

    #[test]
    fn command_line_origin() {
        let (_, e) = parse("memory=x", &Origin::CommandLine);
        assert_eq!(
            e[0].to_string(),
            "command line argument 1: key 'memory': expected a value, found word `x` (strings need quotes: 'x')"
        );
    }
}
