//! Configs built to attack the parser: each limit has a test, and each
//! test runs in well under a second in a debug build. The time bounds are
//! generous (a busy machine must not fail them) but far below what the
//! unbounded work took (a 1 MB key name: about a minute in debug).

use std::time::{Duration, Instant};

use super::*;

fn origin() -> Origin {
    Origin::File("/etc/xen/t".into())
}

/// Loads `text`; returns every diagnostic (errors and warnings) as shown.
fn shown(text: &str) -> Vec<String> {
    match load_str(text, &origin(), &[]) {
        Ok(l) => l.warnings.iter().map(ToString::to_string).collect(),
        Err(e @ ConfigError::Invalid { .. }) => {
            let (mut lines, _) = e.warning_lines();
            if let ConfigError::Invalid { errors, .. } = &e {
                lines.extend(errors.0.iter().map(ToString::to_string));
            }
            lines
        }
        Err(e) => panic!("{e}"),
    }
}

fn timed<T>(what: &str, limit: Duration, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    assert!(took < limit, "{what} took {took:?} (limit {limit:?})");
    out
}

#[test]
fn lists_nested_too_deep_are_an_error_with_file_line_and_key() {
    // 5 000 deep overflowed the stack of the recursive parser.
    let deep = format!(
        "name = 'x'\n\ndisk = {}{}\nmemory = 128\n",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let lines = timed("5 000 nested lists", Duration::from_secs(5), || {
        shown(&deep)
    });
    assert_eq!(
        lines,
        ["/etc/xen/t:3: key 'disk': lists are nested more than 32 deep; an xl config needs two levels at most"]
    );
    // Unclosed ones too, and on a thread with a small stack.
    let open = format!("name = 'x'\ndisk = {}\n", "[".repeat(200_000));
    let lines = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || shown(&open))
        .unwrap()
        .join()
        .expect("no stack overflow");
    assert_eq!(
        lines,
        ["/etc/xen/t:2: key 'disk': lists are nested more than 32 deep; an xl config needs two levels at most"]
    );
}

#[test]
fn nesting_up_to_the_limit_parses() {
    let ok = format!(
        "name = 'x'\nfoo = {}{}\n",
        "[".repeat(parser::MAX_NESTING),
        "]".repeat(parser::MAX_NESTING)
    );
    assert_eq!(
        shown(&ok),
        ["/etc/xen/t:2: key 'foo': unknown key, ignored"]
    );
}

#[test]
fn a_one_megabyte_key_name_is_warned_about_at_once() {
    let key = "k".repeat(1 << 20);
    let text = format!("name = 'x'\n{key} = 1\n");
    let lines = timed("a 1 MB key", Duration::from_secs(5), || shown(&text));
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("/etc/xen/t:2: key 'kkkk")
            && lines[0].ends_with("': unknown key, ignored"),
        "{}",
        &lines[0][..80]
    );
}

#[test]
fn fifty_thousand_unknown_keys_are_warned_about_quickly() {
    let mut text = String::from("name = 'x'\n");
    for i in 0..50_000 {
        text.push_str(&format!("memroy{i} = {i}\n"));
    }
    text.push_str("vpcus = 2\n");
    let lines = timed("50 000 unknown keys", Duration::from_secs(10), || {
        shown(&text)
    });
    assert_eq!(lines.len(), 50_001);
    assert_eq!(
        lines[0],
        "/etc/xen/t:2: key 'memroy0': unknown key, ignored (did you mean 'memory'?)"
    );
    // Past the first thousand, no suggestion is searched for.
    assert_eq!(
        lines[9],
        "/etc/xen/t:11: key 'memroy9': unknown key, ignored (did you mean 'memory'?)"
    );
    const { assert!(build::MAX_SUGGESTED < 50_000) };
    assert_eq!(
        lines[50_000],
        "/etc/xen/t:50002: key 'vpcus': unknown key, ignored"
    );
}

#[test]
fn fifty_thousand_settings_of_one_key_merge_quickly() {
    let mut text = String::from("name = 'x'\ndisk = []\n");
    for i in 0..50_000 {
        text.push_str(&format!("extra += 'a{i}'\n"));
    }
    let lines = timed("50 000 appends", Duration::from_secs(10), || shown(&text));
    // `extra` without `kernel`: one warning, however often it was set.
    assert_eq!(lines.len(), 1, "{lines:?}");
}

#[test]
fn escape_sequences_in_the_config_are_shown_escaped() {
    let text = "name = 'x'\ndisk = ['\\x1b]0;owned\\x07\\x1b[2J,xvda,w,bogus=\\r1']\n";
    let lines = shown(text);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        !lines[0].contains('\u{1b}') && !lines[0].contains('\r'),
        "{:?}",
        lines[0]
    );
    assert!(
        lines[0].contains("\\u{1b}") || lines[0].contains("\\r"),
        "{}",
        lines[0]
    );
    // A name with a control character is refused, and shown escaped.
    let lines = shown("name = 'a\\x1b[31m'\n");
    assert_eq!(
        lines,
        ["/etc/xen/t:1: key 'name': 'a\\u{1b}[31m' is not a usable name: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'"]
    );
}

#[test]
fn raw_control_bytes_and_invalid_utf8_are_shown_escaped() {
    let text = "name = 'x'\n\u{1b}[31m = 1\nmemory = '\u{9b}2J'\n";
    for line in shown(text) {
        assert!(
            !line.chars().any(|c| c.is_control()),
            "unescaped control character in {line:?}"
        );
    }
}
