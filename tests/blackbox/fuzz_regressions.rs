//! The fuzz targets' regression cases, replayed by an ordinary `cargo test`: every file
//! under `fuzz/regressions/<target>/` (minimised inputs that once crashed, hung or ran
//! out of memory) and `fuzz/seeds/<target>/` goes through `fuzz/harness.rs`, the same
//! code and the same invariants as the cargo-fuzz target of that name (README "Fuzzing").
//! No server is started: these call the library directly.

use std::path::{Path, PathBuf};

#[path = "../../fuzz/harness.rs"]
mod harness;

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for kind in ["regressions", "seeds"] {
        let Ok(dir) = std::fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        for entry in dir {
            let path = entry.expect("read_dir entry").path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Runs `check` on every input of `target`, naming the file that fails.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let files = inputs(target);
    for path in &files {
        let data = std::fs::read(path).expect("read input");
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("fuzz input {} fails again", path.display());
        }
    }
    files.len()
}

#[test]
fn otlp_protobuf_regressions_and_seeds_pass() {
    assert!(replay("otlp_protobuf", harness::otlp_protobuf) > 0);
}

#[test]
fn otlp_json_regressions_and_seeds_pass() {
    assert!(replay("otlp_json", harness::otlp_json) > 0);
}

#[test]
fn stack_fingerprint_regressions_and_seeds_pass() {
    assert!(replay("stack_fingerprint", harness::stack_fingerprint) > 0);
}

#[test]
fn analysis_core_regressions_pass() {
    // Its inputs are `arbitrary` bytes, so there are no seeds; an empty input is a valid
    // (empty) trace and proves the harness runs.
    harness::analysis_core(&[]);
    replay("analysis_core", harness::analysis_core);
}
