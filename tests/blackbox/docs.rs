//! The docs as users read them: tables that render as one table.

use std::path::Path;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md")
}

/// The rows of the first Markdown table after `heading`, up to the first line that is
/// not a table row (a blank line ends a table: rows after it render as a paragraph).
fn table_after(text: &str, heading: &str) -> Vec<String> {
    let from = text
        .find(heading)
        .unwrap_or_else(|| panic!("no heading {heading}"));
    text[from..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .map(String::from)
        .collect()
}

#[test]
fn the_http_api_table_is_one_table_with_every_endpoint() {
    let rows = table_after(&readme(), "## The HTTP API");
    for endpoint in [
        "GET /api/v1/verdicts/{trace_id}",
        "GET /api/v1/fingerprints",
        "GET /api/v1/grafana/verdicts",
        "GET /api/v1/grafana/fingerprints",
        "GET /api/v1/grafana/series",
    ] {
        assert!(
            rows.iter().any(|r| r.contains(endpoint)),
            "{endpoint} is not in the HTTP API table (a blank line splits it?):\n{}",
            rows.join("\n")
        );
    }
}
