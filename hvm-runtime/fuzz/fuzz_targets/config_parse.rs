//! A config file from the fuzzer's bytes, through the lexer, the parser
//! and the whole load (the typed spec), with `key=value` overrides after
//! the first NUL byte, one per further NUL. Invariants: nothing panics or
//! overflows the stack, and no message shows a raw control character
//! (every diagnostic escapes what it quotes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pvio_hvm_runtime::config::{self, lexer, parser, ConfigError, Origin};

fn assert_printable(line: &str) {
    assert!(
        !line.chars().any(char::is_control),
        "a message shows a raw control character: {line:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let file = parts.next().unwrap_or_default();
    let overrides: Vec<String> = parts.map(str::to_owned).collect();
    let origin = Origin::File("fuzz.cfg".into());

    let _ = lexer::lex(file);
    let (_, errors) = parser::parse(file, &origin);
    for e in &errors {
        assert_printable(&e.to_string());
    }
    match config::load_str(file, &origin, &overrides) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                assert_printable(&w.to_string());
            }
        }
        Err(e @ ConfigError::Invalid { .. }) => {
            let (warnings, _) = e.warning_lines();
            for w in &warnings {
                assert_printable(w);
            }
            if let ConfigError::Invalid { errors, .. } = &e {
                assert!(!errors.0.is_empty(), "an invalid config with no error");
                for d in &errors.0 {
                    assert_printable(&d.to_string());
                }
            }
        }
        Err(e) => panic!("load_str does no I/O, yet: {e}"),
    }
});
