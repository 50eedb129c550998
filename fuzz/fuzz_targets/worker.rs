//! libFuzzer driver of `plasm_fuzz::worker` (needs `PLASM_WORKER_EXE`, the plasm binary).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plasm_fuzz::worker(data));
