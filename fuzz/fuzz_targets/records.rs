//! libFuzzer driver of `plasm_fuzz::records` (the body lives in the library so the corpus replays on stable).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plasm_fuzz::records(data));
