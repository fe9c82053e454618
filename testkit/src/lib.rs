//! pvio-testkit: harnesses that exercise `pvio-backends` from the outside,
//! for tests and fuzzing. Today: the body of the block request parser's fuzz
//! target ([`blk_fuzz`]), which `backends/fuzz` runs under libFuzzer and this
//! crate's tests run over a generated corpus on stable Rust.
//!
//! It must not know the backends' internals: it uses their public API only
//! (the request parser, the disk description, guest memory). Nothing the
//! product builds links it; only tests and fuzz targets do.

pub mod blk_fuzz;
