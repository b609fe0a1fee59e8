//! cargo-fuzz target `analysis_core`: see `fuzz/harness.rs` and README "Fuzzing".
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::analysis_core(data));
