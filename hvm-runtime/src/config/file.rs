//! A parsed config as a set of keys: statements merged in order (`=`
//! replaces, `+=` appends), then the command line's `key=value` overrides
//! applied on top, as `xl create FILE key=value...` does.

use std::collections::HashMap;

use super::ast::{Op, Statement, Value, ValueKind};
use super::diag::{Diagnostic, Location, Origin};
use super::parser::parse;

/// One key's final value and where it was last set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The key.
    pub key: String,
    /// The value, after every `+=`.
    pub value: Value,
    /// The statement that set it last.
    pub at: Location,
}

/// The keys of a config, in the order they were first set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFile {
    /// The settings.
    pub settings: Vec<Setting>,
}

/// A config's settings with the errors and warnings found on the way.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// The merged settings (those that parsed).
    pub file: ConfigFile,
    /// Errors: the config must not be used.
    pub errors: Vec<Diagnostic>,
    /// Warnings: the config is usable.
    pub warnings: Vec<Diagnostic>,
    /// Where each key is in `file.settings`: a config of many statements
    /// merges in linear time.
    index: HashMap<String, usize>,
}

impl Parsed {
    /// Parses the text of a config file.
    pub fn from_text(text: &str, origin: &Origin) -> Parsed {
        let (statements, errors) = parse(text, origin);
        let mut parsed = Parsed {
            errors,
            ..Parsed::default()
        };
        for s in statements {
            parsed.apply(s, true);
        }
        parsed
    }

    /// Applies `key=value` arguments from the command line: each argument
    /// is parsed with the config grammar (so strings need quotes, as with
    /// xl) and replaces (`=`) or extends (`+=`) the file's value.
    pub fn apply_overrides(&mut self, args: &[String]) {
        for (n, arg) in args.iter().enumerate() {
            let number = u32::try_from(n.saturating_add(1)).unwrap_or(u32::MAX);
            let (statements, errors) = parse(arg, &Origin::CommandLine);
            let renumber = |mut at: Location| {
                at.line = number;
                at
            };
            self.errors.extend(errors.into_iter().map(|mut d| {
                d.at = renumber(d.at);
                d
            }));
            for mut s in statements {
                s.line = number;
                renumber_value(&mut s.value, number);
                self.apply(s, false);
            }
        }
    }

    fn apply(&mut self, s: Statement, warn_duplicates: bool) {
        let at = s.value.at.clone();
        let at = Location { line: s.line, ..at };
        let existing = match self.index.get(&s.key) {
            Some(&i) => self.file.settings.get_mut(i),
            None => None,
        };
        match (existing, s.op) {
            (None, _) => {
                self.index.insert(s.key.clone(), self.file.settings.len());
                self.file.settings.push(Setting {
                    key: s.key,
                    value: s.value,
                    at,
                });
            }
            (Some(old), Op::Set) => {
                if warn_duplicates {
                    self.warnings.push(Diagnostic::for_key(
                        at.clone(),
                        &s.key,
                        format!("set again; this value replaces the one from line {}", old.at.line),
                    ));
                }
                old.value = s.value;
                old.at = at;
            }
            (Some(old), Op::Append) => match (&mut old.value.kind, s.value.kind) {
                (ValueKind::List(items), ValueKind::List(more)) => {
                    items.extend(more);
                    old.at = at;
                }
                (ValueKind::Str(text), ValueKind::Str(more)) => {
                    text.push_str(&more);
                    old.at = at;
                }
                (old_kind, new_kind) => self.errors.push(Diagnostic::for_key(
                    at,
                    &s.key,
                    format!(
                        "'+=' cannot append {} to {} (set at {}); append a list to a list or a string to a string",
                        new_kind.kind_name(),
                        old_kind.kind_name(),
                        old.at
                    ),
                )),
            },
        }
    }
}

fn renumber_value(v: &mut Value, line: u32) {
    v.at.line = line;
    if let ValueKind::List(items) = &mut v.kind {
        for item in items {
            renumber_value(item, line);
        }
    }
}

impl ConfigFile {
    /// The setting of `key`, if the config has one.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.key == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Parsed {
        Parsed::from_text(text, &Origin::File("cfg".into()))
    }

    fn msgs(d: &[Diagnostic]) -> Vec<String> {
        d.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn later_set_wins_with_a_warning() {
        let p = parsed("memory = 256\nmemory = 512");
        assert_eq!(
            p.file.get("memory").unwrap().value.kind,
            ValueKind::Num(512)
        );
        assert_eq!(p.file.get("memory").unwrap().at.line, 2);
        assert_eq!(
            msgs(&p.warnings),
            ["cfg:2: key 'memory': set again; this value replaces the one from line 1"]
        );
    }

    #[test]
    fn append_to_lists_and_strings() {
        let p =
            parsed("disk = ['a']\ndisk += ['b', 'c']\nextra = 'x'\nextra += ' y'\nnew += ['z']");
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let disk = &p.file.get("disk").unwrap().value;
        let ValueKind::List(items) = &disk.kind else {
            panic!("{disk:?}")
        };
        let lines: Vec<u32> = items.iter().map(|v| v.at.line).collect();
        assert_eq!(lines, [1, 2, 2]);
        assert_eq!(
            p.file.get("extra").unwrap().value.kind,
            ValueKind::Str("x y".into())
        );
        assert!(p.file.get("new").is_some());
    }

    #[test]
    fn append_of_mismatched_kinds_is_an_error() {
        let p = parsed("disk = ['a']\ndisk += 'b'\nmemory = 1\nmemory += 2");
        assert_eq!(
            msgs(&p.errors),
            [
                "cfg:2: key 'disk': '+=' cannot append a string to a list (set at cfg:1); append a list to a list or a string to a string",
                "cfg:4: key 'memory': '+=' cannot append a number to a number (set at cfg:3); append a list to a list or a string to a string"
            ]
        );
    }

    #[test]
    fn overrides_replace_and_extend_without_warnings() {
        let mut p = parsed("memory = 256\nvif = ['bridge=a']");
        p.apply_overrides(&[
            "memory=1024".into(),
            "vif+=['bridge=b']".into(),
            "name='x'; vcpus=2".into(),
        ]);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let mem = p.file.get("memory").unwrap();
        assert_eq!(mem.value.kind, ValueKind::Num(1024));
        assert_eq!(mem.at.to_string(), "command line argument 1");
        let ValueKind::List(vifs) = &p.file.get("vif").unwrap().value.kind else {
            panic!()
        };
        assert_eq!(vifs[0].at.to_string(), "cfg:2");
        assert_eq!(vifs[1].at.to_string(), "command line argument 2");
        assert_eq!(p.file.get("vcpus").unwrap().at.line, 3);
    }

    #[test]
    fn override_errors_name_the_argument() {
        let mut p = parsed("");
        p.apply_overrides(&["memory=1".into(), "name=x".into()]);
        assert_eq!(
            msgs(&p.errors),
            ["command line argument 2: key 'name': expected a value, found word `x` (strings need quotes: 'x')"]
        );
    }
}
