//! Descriptor chains built from the fuzzer's bytes, fed to the virtio-blk
//! request parser. The body is `pvio_testkit::blk_fuzz::run`, which that
//! crate's tests also run over a generated corpus on stable Rust.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pvio_testkit::blk_fuzz::run(data);
});
