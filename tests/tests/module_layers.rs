//! The one-way rule, kept: inside every folder of every crate (the crate
//! root included), the modules' imports of each other form no cycle; a
//! module never imports from a module that imports it.
//!
//! The check reads the sources: every `crate::a::b` and `super::x` path
//! outside comments and unit tests is an edge from the module that writes
//! it to the module it names, between the two siblings where their paths
//! part. Edges between a module and its own parent or child are not the
//! rule's (a parent declares its children). Cycles not untangled yet
//! would be listed in [`KNOWN`]; any other cycle fails with the edges
//! that close it. `docs/architecture.md` shows the
//! module map.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Cycles not untangled yet, as (crate, folder, from, to): none today.
/// A cycle may be listed here only while it is being untangled.
const KNOWN: &[(&str, &str, &str, &str)] = &[];

const CRATES: &[&str] = &[
    "frontend-protocol",
    "backends",
    "passthrough",
    "hvm-runtime",
    "bench",
    "net-driver",
    "testkit",
];

type Edges = BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of `file` under `src`: `domain/live.rs` is
/// `[domain, live]`, `domain/mod.rs` is `[domain]`, `lib.rs` is `[]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    if parts.first().map(String::as_str) == Some("bin") {
        parts.clear();
    }
    parts
}

/// The lowercase segments of a path starting at `rest` (after `crate::`
/// or `super::`), up to a type, a brace or the end.
fn segments(rest: &str) -> Vec<String> {
    let mut out = Vec::new();
    for seg in rest.split("::") {
        let ident: String = seg
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() || !ident.starts_with(|c: char| c.is_ascii_lowercase()) {
            break;
        }
        let whole = ident.len() == seg.len();
        out.push(ident);
        if !whole {
            break;
        }
    }
    out
}

/// The code of `text` the rule applies to: no comment lines, nothing
/// from a `#[cfg(test)]` module on.
fn code(text: &str) -> String {
    let cut = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..cut]
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn scan(krate: &str) -> Edges {
    let src = workspace().join(krate).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges = Edges::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with("_tests.rs") || name == "tests.rs" {
            continue;
        }
        let me = module_of(&src, &f);
        let text = code(&std::fs::read_to_string(&f).unwrap());
        let mut targets = Vec::new();
        for (i, _) in text.match_indices("crate::") {
            let before = text[..i].chars().last();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue; // `pvio_crate::` and the like
            }
            let rest = &text[i + "crate::".len()..];
            if let Some(inner) = rest.strip_prefix('{') {
                let group = &inner[..inner.find('}').unwrap_or(inner.len())];
                for item in group.split(',') {
                    targets.push(segments(item.trim()));
                }
            } else {
                targets.push(segments(rest));
            }
        }
        for (i, _) in text.match_indices("super::") {
            if text[..i].ends_with("super::") {
                continue; // counted from the first `super::`
            }
            let mut base = me.clone();
            let mut rest = &text[i..];
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            if let Some(inner) = rest.strip_prefix('{') {
                let group = &inner[..inner.find('}').unwrap_or(inner.len())];
                for item in group.split(',') {
                    let mut t = base.clone();
                    t.extend(segments(item.trim()));
                    targets.push(t);
                }
            } else {
                let mut t = base;
                t.extend(segments(rest));
                targets.push(t);
            }
        }
        for t in targets {
            let common = me.iter().zip(&t).take_while(|(a, b)| a == b).count();
            if common == me.len() || common == t.len() {
                continue; // a module and its parent or child
            }
            edges
                .entry(me[..common].to_vec())
                .or_default()
                .entry(me[common].clone())
                .or_default()
                .insert(t[common].clone());
        }
    }
    edges
}

fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_owned()];
    while let Some(n) = stack.pop() {
        if n == to {
            return true;
        }
        if seen.insert(n.clone()) {
            stack.extend(graph.get(&n).into_iter().flatten().cloned());
        }
    }
    false
}

#[test]
fn modules_import_one_way_in_every_folder() {
    let mut new = Vec::new();
    let mut known_seen = BTreeSet::new();
    for krate in CRATES {
        for (folder, graph) in scan(krate) {
            let folder_name = folder.join("/");
            for (from, tos) in &graph {
                for to in tos {
                    if !reaches(&graph, to, from) {
                        continue;
                    }
                    let key = (*krate, folder_name.as_str(), from.as_str(), to.as_str());
                    if let Some(k) = KNOWN.iter().find(|k| **k == key) {
                        known_seen.insert(*k);
                    } else {
                        new.push(format!(
                            "{krate}/src/{folder_name}: {from} -> {to} closes a cycle"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        new.is_empty(),
        "modules that import each other (untangle them; see docs/architecture.md):\n{}",
        new.join("\n")
    );
    let gone: Vec<_> = KNOWN.iter().filter(|k| !known_seen.contains(k)).collect();
    assert!(
        gone.is_empty(),
        "cycles listed in KNOWN are gone: remove them from the list: {gone:?}"
    );
}

#[test]
fn the_scan_sees_a_cycle_when_there_is_one() {
    let mut g = BTreeMap::new();
    g.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    g.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert!(reaches(&g, "b", "a"));
    assert_eq!(segments("domain::live::LiveDomain"), ["domain", "live"]);
    assert_eq!(segments("report::error_line(&e)"), ["report", "error_line"]);
    let src = Path::new("/x/src");
    assert_eq!(
        module_of(src, Path::new("/x/src/domain/mod.rs")),
        ["domain"]
    );
    assert_eq!(
        module_of(src, Path::new("/x/src/domain/live.rs")),
        ["domain", "live"]
    );
}
