//! `faultline-eval`: scores faultline's verdicts against the labelled captures of the
//! scenario zoo (`tests/zoo/`), beside the deepest-error-span baseline, with the
//! calibration table of the confidence figures.
//!
//! ```text
//! cargo run --release --bin faultline-eval [-- [--json] [--trace ID] [CAPTURE.json|DIR ...]]
//! ```
//! `--trace ID` prints the verdict of that one trace as the API would serve it (with its
//! evidence), to see why a label was missed.
//! Without paths it reads every `tests/zoo/captures/*.json`. Prints Markdown tables (or
//! the whole report as JSON with `--json`); exits 1 when a labelled verdict is wrong, a
//! healthy request got a verdict or a capture cannot be read.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use faultline::analysis::{analyze_trace, AnalysisConfig};
use faultline::eval::{read_capture, score, Capture};

fn captures_in(paths: &[PathBuf]) -> Result<Vec<Capture>, String> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.extension().and_then(|e| e.to_str()) == Some("json"))
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(p.clone());
        }
    }
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
            let name = f.file_stem().and_then(|s| s.to_str()).unwrap_or("capture");
            read_capture(name, &text)
        })
        .collect()
}

fn main() -> ExitCode {
    let mut json = false;
    let mut trace = None;
    let mut paths = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--trace" => trace = args.next(),
            "-h" | "--help" => {
                println!("usage: faultline-eval [--json] [CAPTURE.json|DIR ...]\n\nScores the verdicts on labelled zoo captures (default: tests/zoo/captures).");
                return ExitCode::SUCCESS;
            }
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    if paths.is_empty() {
        paths.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/zoo/captures"));
    }
    let captures = match captures_in(&paths) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("faultline-eval: {e}");
            return ExitCode::from(2);
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    if let Some(id) = trace {
        let found = captures
            .iter()
            .flat_map(|c| &c.traces)
            .find(|t| t.trace_id.to_string() == id);
        let Some(t) = found else {
            eprintln!("faultline-eval: no trace {id} in the captures");
            return ExitCode::from(2);
        };
        for v in analyze_trace(t, &AnalysisConfig::default(), now) {
            match serde_json::to_string_pretty(&v) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("faultline-eval: {e}"),
            }
        }
        return ExitCode::SUCCESS;
    }
    let report = score(&captures, &AnalysisConfig::default(), now);
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("faultline-eval: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", report.to_markdown());
    }
    let all_right =
        report.outcomes.iter().all(|o| o.wrong.is_empty()) && report.false_verdicts.is_empty();
    if all_right {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
