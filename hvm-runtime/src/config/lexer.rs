//! The xl config lexer: turns text into tokens, each with its line.
//!
//! Tokens: keys (`[A-Za-z_][A-Za-z0-9_-]*`), strings in single or double
//! quotes with C escapes (`\n \t \r \\ \' \" \a \b \f \v \0`-style octal,
//! `\xHH`), numbers (decimal, octal with a leading `0`, hex with `0x`, an
//! optional leading `-`), `=`, `+=`, `[`, `]`, `,`, `;` and newlines. `#`
//! starts a comment that runs to the end of the line.
//!
//! The lexer never fails: a malformed piece becomes an [`Tok::Error`] token
//! with the reason, and the parser reports it with the key of the statement
//! it is in. Lexing goes on after it, so every error of a file is found.

use std::fmt;

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// A key (or a bare word where a value was expected).
    Ident(String),
    /// A quoted string, escapes decoded.
    Str(String),
    /// A number.
    Num(i64),
    /// `=`
    Assign,
    /// `+=`
    Append,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
    /// `;`
    Semi,
    /// The end of a line.
    Newline,
    /// Something that is not a token; the text says why.
    Error(String),
}

impl fmt::Display for Tok {
    /// Describes the token for "expected X, found Y" messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(w) => write!(f, "word `{w}`"),
            Tok::Str(s) => write!(f, "string {s:?}"),
            Tok::Num(n) => write!(f, "number {n}"),
            Tok::Assign => f.write_str("'='"),
            Tok::Append => f.write_str("'+='"),
            Tok::LBracket => f.write_str("'['"),
            Tok::RBracket => f.write_str("']'"),
            Tok::Comma => f.write_str("','"),
            Tok::Semi => f.write_str("';'"),
            Tok::Newline => f.write_str("the end of the line"),
            Tok::Error(e) => f.write_str(e),
        }
    }
}

/// A token and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Its 1-based line.
    pub line: u32,
}

/// Splits `text` into tokens.
pub fn lex(text: &str) -> Vec<Token> {
    Lexer {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
    }
    .run()
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: u32,
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn run(mut self) -> Vec<Token> {
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            let line = self.line;
            let tok = match c {
                ' ' | '\t' | '\r' => {
                    self.pos += 1;
                    continue;
                }
                '#' => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                    continue;
                }
                '\n' => {
                    self.pos += 1;
                    self.line = self.line.saturating_add(1);
                    Tok::Newline
                }
                '=' => self.single(Tok::Assign),
                '[' => self.single(Tok::LBracket),
                ']' => self.single(Tok::RBracket),
                ',' => self.single(Tok::Comma),
                ';' => self.single(Tok::Semi),
                '+' if self.peek_at(1) == Some('=') => {
                    self.pos += 2;
                    Tok::Append
                }
                '\'' | '"' => self.string(c),
                '0'..='9' => self.number(),
                '-' if self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) => self.number(),
                c if c.is_ascii_alphabetic() || c == '_' => self.ident(),
                c => {
                    self.pos += 1;
                    Tok::Error(format!("unexpected character {c:?}"))
                }
            };
            out.push(Token { tok, line });
        }
        out
    }

    fn single(&mut self, tok: Tok) -> Tok {
        self.pos += 1;
        tok
    }

    fn ident(&mut self) -> Tok {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.pos += 1;
        }
        Tok::Ident(self.chars[start..self.pos].iter().collect())
    }

    /// A number: everything up to the next separator is taken, so `512M`
    /// is one bad number rather than a number and a word.
    fn number(&mut self) -> Tok {
        let start = self.pos;
        self.pos += 1;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        parse_number(&text).map_or_else(Tok::Error, Tok::Num)
    }

    fn string(&mut self, quote: char) -> Tok {
        self.pos += 1;
        let mut bytes = Vec::new();
        let mut error: Option<String> = None;
        loop {
            let Some(c) = self.peek() else {
                return Tok::Error(format!(
                    "string not closed: the file ends before the closing {quote}"
                ));
            };
            match c {
                '\n' => {
                    // Leave the newline to end the statement.
                    return Tok::Error(format!(
                        "string not closed: the line ends before the closing {quote}"
                    ));
                }
                c if c == quote => {
                    self.pos += 1;
                    break;
                }
                '\\' => {
                    self.pos += 1;
                    // A backslash cannot continue a string on the next
                    // line (xl has no line continuation either).
                    let c = match self.peek() {
                        None => {
                            return Tok::Error(format!(
                                "string not closed: a backslash ends the file before the closing {quote}"
                            ))
                        }
                        Some('\n') => {
                            return Tok::Error(format!(
                                "string not closed: a backslash ends the line before the closing {quote} (a string cannot go on to the next line)"
                            ))
                        }
                        Some(c) => c,
                    };
                    match self.escape(c) {
                        Ok(b) => bytes.extend_from_slice(&b),
                        Err(e) => {
                            error.get_or_insert(e);
                        }
                    }
                }
                c => {
                    let mut buf = [0u8; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    self.pos += 1;
                }
            }
        }
        if let Some(e) = error {
            return Tok::Error(e);
        }
        match String::from_utf8(bytes) {
            Ok(s) => Tok::Str(s),
            Err(_) => Tok::Error("string is not valid UTF-8 after its escapes".to_owned()),
        }
    }

    /// Decodes one escape; `self.pos` is at `c`, just past the backslash.
    fn escape(&mut self, c: char) -> Result<Vec<u8>, String> {
        self.pos += 1;
        let byte = match c {
            'n' => b'\n',
            't' => b'\t',
            'r' => b'\r',
            'a' => 0x07,
            'b' => 0x08,
            'f' => 0x0c,
            'v' => 0x0b,
            '\\' => b'\\',
            '\'' => b'\'',
            '"' => b'"',
            '?' => b'?',
            'x' => {
                let digits = self.take_while_max(2, |c| c.is_ascii_hexdigit());
                if digits.is_empty() {
                    return Err("\\x needs one or two hex digits".to_owned());
                }
                // Two hex digits always fit a byte.
                u8::from_str_radix(&digits, 16).map_err(|e| e.to_string())?
            }
            '0'..='7' => {
                self.pos -= 1;
                let digits = self.take_while_max(3, |c| ('0'..='7').contains(&c));
                u8::from_str_radix(&digits, 8)
                    .map_err(|_| format!("octal escape \\{digits} is larger than a byte"))?
            }
            other => return Err(format!("unknown escape \\{other} in a string")),
        };
        Ok(vec![byte])
    }

    fn take_while_max(&mut self, max: usize, ok: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        while self.pos - start < max && self.peek().is_some_and(&ok) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }
}

/// Parses a number token's text: decimal, octal (leading `0`) or hex
/// (`0x`), with an optional leading `-`.
fn parse_number(text: &str) -> Result<i64, String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (radix, body, what) = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, hex, "hex")
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..], "octal")
    } else {
        (10, digits, "decimal")
    };
    let valid = !body.is_empty() && body.chars().all(|c| c.is_digit(radix));
    if !valid {
        let hint = match what {
            "octal" => " (a leading 0 makes a number octal)",
            "decimal" if text.ends_with(|c: char| c.is_ascii_alphabetic()) => {
                " (numbers take no unit; quote it if it is a string)"
            }
            _ => "",
        };
        return Err(format!("invalid {what} number `{text}`{hint}"));
    }
    let magnitude =
        u64::from_str_radix(body, radix).map_err(|_| format!("number `{text}` is too large"))?;
    let value = if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    };
    value.ok_or_else(|| format!("number `{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        lex(text).into_iter().map(|t| t.tok).collect()
    }

    fn one(text: &str) -> Tok {
        let mut t = toks(text);
        assert_eq!(t.len(), 1, "{text}: {t:?}");
        t.remove(0)
    }

    #[test]
    fn punctuation_and_keys() {
        assert_eq!(
            toks("a = [ 1 , 2 ] ; b += 'x'\n"),
            vec![
                Tok::Ident("a".into()),
                Tok::Assign,
                Tok::LBracket,
                Tok::Num(1),
                Tok::Comma,
                Tok::Num(2),
                Tok::RBracket,
                Tok::Semi,
                Tok::Ident("b".into()),
                Tok::Append,
                Tok::Str("x".into()),
                Tok::Newline,
            ]
        );
    }

    #[test]
    fn keys_may_hold_digits_underscores_and_dashes() {
        assert_eq!(one("full-screen"), Tok::Ident("full-screen".into()));
        assert_eq!(one("on_crash2"), Tok::Ident("on_crash2".into()));
    }

    #[test]
    fn comments_run_to_the_end_of_the_line() {
        assert_eq!(
            toks("a = 1 # memory = 'x' [\n"),
            vec![
                Tok::Ident("a".into()),
                Tok::Assign,
                Tok::Num(1),
                Tok::Newline
            ]
        );
        assert_eq!(toks("# only a comment"), vec![]);
    }

    #[test]
    fn lines_are_counted() {
        let t = lex("a = 1\n\n  b = 2\r\n");
        let lines: Vec<u32> = t.iter().map(|t| t.line).collect();
        assert_eq!(lines, vec![1, 1, 1, 1, 2, 3, 3, 3, 3]);
    }

    #[test]
    fn numbers_decimal_octal_hex_negative() {
        assert_eq!(one("512"), Tok::Num(512));
        assert_eq!(one("0"), Tok::Num(0));
        assert_eq!(one("0755"), Tok::Num(0o755));
        assert_eq!(one("0x1F"), Tok::Num(31));
        assert_eq!(one("0XfF"), Tok::Num(255));
        assert_eq!(one("-3600"), Tok::Num(-3600));
        assert_eq!(one("-0x10"), Tok::Num(-16));
        assert_eq!(one("9223372036854775807"), Tok::Num(i64::MAX));
        assert_eq!(one("-9223372036854775808"), Tok::Num(i64::MIN));
    }

    #[test]
    fn bad_numbers() {
        assert_eq!(
            one("512M"),
            Tok::Error(
                "invalid decimal number `512M` (numbers take no unit; quote it if it is a string)"
                    .into()
            )
        );
        assert_eq!(
            one("09"),
            Tok::Error("invalid octal number `09` (a leading 0 makes a number octal)".into())
        );
        assert_eq!(one("0x"), Tok::Error("invalid hex number `0x`".into()));
        assert_eq!(
            one("1.5"),
            Tok::Error("invalid decimal number `1.5`".into())
        );
        assert_eq!(
            one("99999999999999999999"),
            Tok::Error("number `99999999999999999999` is too large".into())
        );
        assert_eq!(
            one("9223372036854775808"),
            Tok::Error("number `9223372036854775808` is too large".into())
        );
    }

    #[test]
    fn strings_in_both_quotes() {
        assert_eq!(one("'a \"b\"'"), Tok::Str("a \"b\"".into()));
        assert_eq!(one("\"a 'b'\""), Tok::Str("a 'b'".into()));
        assert_eq!(one("''"), Tok::Str(String::new()));
        assert_eq!(one("'# not a comment'"), Tok::Str("# not a comment".into()));
        assert_eq!(one("'ünï'"), Tok::Str("ünï".into()));
    }

    #[test]
    fn c_escapes() {
        assert_eq!(
            one(r#"'\n\t\r\\\'\"\a\b\f\v\?'"#),
            Tok::Str("\n\t\r\\'\"\x07\x08\x0c\x0b?".into())
        );
        assert_eq!(one(r"'\x41\x4a\x7'"), Tok::Str("AJ\x07".into()));
        assert_eq!(one(r"'\101\0\12'"), Tok::Str("A\0\n".into()));
        assert_eq!(one(r"'\1010'"), Tok::Str("A0".into()));
        assert_eq!(one(r"'\xc3\xa9'"), Tok::Str("é".into()));
    }

    #[test]
    fn bad_strings() {
        assert_eq!(
            one(r"'\q'"),
            Tok::Error("unknown escape \\q in a string".into())
        );
        assert_eq!(
            one(r"'\xg'"),
            Tok::Error("\\x needs one or two hex digits".into())
        );
        assert_eq!(
            one(r"'\777'"),
            Tok::Error("octal escape \\777 is larger than a byte".into())
        );
        assert_eq!(
            one(r"'\xff'"),
            Tok::Error("string is not valid UTF-8 after its escapes".into())
        );
        assert_eq!(
            toks("'abc\nb"),
            vec![
                Tok::Error("string not closed: the line ends before the closing '".into()),
                Tok::Newline,
                Tok::Ident("b".into())
            ]
        );
        assert_eq!(
            one("\"abc"),
            Tok::Error("string not closed: the file ends before the closing \"".into())
        );
        assert_eq!(
            one("'a\\"),
            Tok::Error("string not closed: a backslash ends the file before the closing '".into())
        );
        assert_eq!(
            toks("'a\\\n'"),
            vec![
                Tok::Error("string not closed: a backslash ends the line before the closing ' (a string cannot go on to the next line)".into()),
                Tok::Newline,
                Tok::Error("string not closed: the file ends before the closing '".into()),
            ]
        );
    }

    #[test]
    fn stray_characters() {
        assert_eq!(one("@"), Tok::Error("unexpected character '@'".into()));
        assert_eq!(one("+"), Tok::Error("unexpected character '+'".into()));
        assert_eq!(one("-"), Tok::Error("unexpected character '-'".into()));
    }
}
