//! Typed reads of a config's settings. Each read checks the value's type
//! strictly (unlike xl, a quoted number is not a number), records an error
//! with the file, line and key when it is wrong, and marks the key as used
//! so that the keys nobody read can be reported as unknown.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::ast::{Value, ValueKind};
use super::diag::{Diagnostic, Location};
use super::file::{ConfigFile, Setting};

/// A value and the place it was written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub at: Location,
}

/// Reads settings with types and collects errors and warnings.
pub struct Fields<'a> {
    file: &'a ConfigFile,
    used: BTreeSet<&'a str>,
    /// Errors found so far.
    pub errors: Vec<Diagnostic>,
    /// Warnings found so far.
    pub warnings: Vec<Diagnostic>,
}

impl<'a> Fields<'a> {
    /// Reads from `file`.
    pub fn new(file: &'a ConfigFile) -> Fields<'a> {
        Fields {
            file,
            used: BTreeSet::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The setting of `key`, marked as used.
    pub fn take(&mut self, key: &str) -> Option<&'a Setting> {
        let s = self.file.get(key)?;
        self.used.insert(s.key.as_str());
        Some(s)
    }

    /// The settings nobody took, in file order.
    pub fn unused(&self) -> impl Iterator<Item = &'a Setting> + '_ {
        self.file
            .settings
            .iter()
            .filter(|s| !self.used.contains(s.key.as_str()))
    }

    /// Records an error about `key` at `at`.
    pub fn error(&mut self, at: &Location, key: &str, message: impl Into<String>) {
        self.errors
            .push(Diagnostic::for_key(at.clone(), key, message));
    }

    /// Records a warning about `key` at `at`.
    pub fn warn(&mut self, at: &Location, key: &str, message: impl Into<String>) {
        self.warnings
            .push(Diagnostic::for_key(at.clone(), key, message));
    }

    fn mismatch(&mut self, key: &str, expected: &str, v: &Value) {
        let hint = match &v.kind {
            ValueKind::Str(s) if expected.contains("number") && s.trim().parse::<i64>().is_ok() => {
                " (write it without quotes)"
            }
            ValueKind::Num(_) if expected.contains("string") => " (quote it)",
            ValueKind::Str(_) if expected.starts_with("a list") => " (write it as [ '...' ])",
            _ => "",
        };
        self.error(&v.at, key, format!("expected {expected}, found {v}{hint}"));
    }

    /// A string.
    pub fn string(&mut self, key: &str) -> Option<Located<String>> {
        let s = self.take(key)?;
        match &s.value.kind {
            ValueKind::Str(text) => Some(Located {
                value: text.clone(),
                at: s.value.at.clone(),
            }),
            _ => {
                self.mismatch(key, "a string", &s.value);
                None
            }
        }
    }

    /// A non-empty string holding a path.
    pub fn path(&mut self, key: &str) -> Option<Located<PathBuf>> {
        let s = self.string(key)?;
        if s.value.is_empty() {
            self.error(&s.at, key, "expected a path, found an empty string");
            return None;
        }
        Some(Located {
            value: PathBuf::from(s.value),
            at: s.at,
        })
    }

    /// A number.
    pub fn number(&mut self, key: &str) -> Option<Located<i64>> {
        let s = self.take(key)?;
        match s.value.kind {
            ValueKind::Num(n) => Some(Located {
                value: n,
                at: s.value.at.clone(),
            }),
            _ => {
                self.mismatch(key, "a number", &s.value);
                None
            }
        }
    }

    /// A number in `min..=max`, converted to `T`.
    pub fn number_in<T: TryFrom<i64>>(&mut self, key: &str, min: i64, max: i64) -> Option<T> {
        let n = self.number(key)?;
        if n.value < min || n.value > max {
            self.error(
                &n.at,
                key,
                format!("expected a number from {min} to {max}, found {}", n.value),
            );
            return None;
        }
        match T::try_from(n.value) {
            Ok(v) => Some(v),
            Err(_) => {
                self.error(&n.at, key, format!("{} is out of range", n.value));
                None
            }
        }
    }

    /// A boolean, written 0 or 1 as in xl.
    pub fn boolean(&mut self, key: &str) -> Option<bool> {
        let s = self.take(key)?;
        match s.value.kind {
            ValueKind::Num(0) => Some(false),
            ValueKind::Num(1) => Some(true),
            _ => {
                self.mismatch(key, "0 or 1", &s.value);
                None
            }
        }
    }

    /// A list of strings.
    pub fn strings(&mut self, key: &str) -> Option<Vec<Located<String>>> {
        let s = self.take(key)?;
        match &s.value.kind {
            ValueKind::List(items) => Some(self.string_items(key, items)),
            _ => {
                self.mismatch(key, "a list of strings", &s.value);
                None
            }
        }
    }

    /// A string or a list of strings.
    pub fn string_or_strings(&mut self, key: &str) -> Option<Vec<Located<String>>> {
        let s = self.take(key)?;
        match &s.value.kind {
            ValueKind::List(items) => Some(self.string_items(key, items)),
            ValueKind::Str(text) => Some(vec![Located {
                value: text.clone(),
                at: s.value.at.clone(),
            }]),
            ValueKind::Num(_) => {
                self.mismatch(key, "a string or a list of strings", &s.value);
                None
            }
        }
    }

    fn string_items(&mut self, key: &str, items: &[Value]) -> Vec<Located<String>> {
        let mut out = Vec::new();
        for item in items {
            match &item.kind {
                ValueKind::Str(text) => out.push(Located {
                    value: text.clone(),
                    at: item.at.clone(),
                }),
                _ => self.mismatch(key, "a string in the list", item),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diag::Origin;
    use crate::config::file::Parsed;

    fn with(text: &str, f: impl FnOnce(&mut Fields<'_>)) -> Vec<String> {
        let p = Parsed::from_text(text, &Origin::File("/etc/xen/winxp".into()));
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let mut fields = Fields::new(&p.file);
        f(&mut fields);
        fields.errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn numbers_are_not_strings() {
        let e = with("\n\n\n\n\n\n\n\n\n\n\nmemory = '512M'", |f| {
            assert_eq!(f.number("memory"), None);
        });
        assert_eq!(
            e,
            ["/etc/xen/winxp:12: key 'memory': expected a number, found string \"512M\""]
        );
        let e = with("memory = \"512\"", |f| {
            assert_eq!(f.number("memory"), None);
        });
        assert_eq!(
            e,
            ["/etc/xen/winxp:1: key 'memory': expected a number, found string \"512\" (write it without quotes)"]
        );
    }

    #[test]
    fn strings_are_not_numbers() {
        let e = with("name = 5", |f| assert_eq!(f.string("name"), None));
        assert_eq!(
            e,
            ["/etc/xen/winxp:1: key 'name': expected a string, found number 5 (quote it)"]
        );
    }

    #[test]
    fn ranges() {
        let e = with("vcpus = 0\nmemory = 64", |f| {
            assert_eq!(f.number_in::<u32>("vcpus", 1, 8), None);
            assert_eq!(f.number_in::<u32>("memory", 1, 100), Some(64));
        });
        assert_eq!(
            e,
            ["/etc/xen/winxp:1: key 'vcpus': expected a number from 1 to 8, found 0"]
        );
    }

    #[test]
    fn booleans_are_0_or_1() {
        let e = with("acpi = 1\napic = 0\npae = 2\nvnc = 'yes'", |f| {
            assert_eq!(f.boolean("acpi"), Some(true));
            assert_eq!(f.boolean("apic"), Some(false));
            assert_eq!(f.boolean("pae"), None);
            assert_eq!(f.boolean("vnc"), None);
            assert_eq!(f.boolean("missing"), None);
        });
        assert_eq!(
            e,
            [
                "/etc/xen/winxp:3: key 'pae': expected 0 or 1, found number 2",
                "/etc/xen/winxp:4: key 'vnc': expected 0 or 1, found string \"yes\""
            ]
        );
    }

    #[test]
    fn lists_of_strings() {
        let e = with(
            "disk = [ 'a',\n 5 ]\nvif = 'bridge=x'\nserial = 'pty'",
            |f| {
                let d = f.strings("disk").unwrap();
                assert_eq!(d.len(), 1);
                assert_eq!(f.strings("vif"), None);
                assert_eq!(f.string_or_strings("serial").unwrap()[0].value, "pty");
            },
        );
        assert_eq!(
            e,
            [
                "/etc/xen/winxp:2: key 'disk': expected a string in the list, found number 5 (quote it)",
                "/etc/xen/winxp:3: key 'vif': expected a list of strings, found string \"bridge=x\" (write it as [ '...' ])"
            ]
        );
    }

    #[test]
    fn empty_paths_and_unused_keys() {
        let p = Parsed::from_text("kernel = ''\nfoo = 1", &Origin::File("f".into()));
        let mut f = Fields::new(&p.file);
        assert_eq!(f.path("kernel"), None);
        assert_eq!(
            f.errors[0].to_string(),
            "f:1: key 'kernel': expected a path, found an empty string"
        );
        let unused: Vec<&str> = f.unused().map(|s| s.key.as_str()).collect();
        assert_eq!(unused, ["foo"]);
    }
}
