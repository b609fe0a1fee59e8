//! The layers of `src/` (docs/architecture.md), held against the code: every `crate::…`
//! path in the library's non-test code is read, each module (the first path segment
//! under `src/`) gets the layer [`LAYERS`] gives it, and the test fails on an import
//! circle between modules or an import from a lower layer to a higher one (or within
//! one layer: modules of a layer are independent of each other).
//!
//! Test code (`#[cfg(test)]` modules, inline or in files of their own) is left out: a
//! test may reach for any helper. The binary (`src/main.rs`) uses the library from
//! outside and sits above every layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// THE layer table, bottom (0) to top: a module may import only modules of lower layers.
/// docs/architecture.md draws it; change both together.
const LAYERS: &[(usize, &[&str])] = &[
    // Plain data and small leaf utilities: nothing else of the crate.
    (0, &["model", "file_watch", "synth"]),
    // THE PURE CORE: one assembled trace to verdicts.
    (1, &["analysis", "fixture"]),
    // What the core's output and options feed: the verdict store, the validated
    // configuration, the scenario zoo's scorer.
    (2, &["config", "store", "eval"]),
    // Metric names and families, logging.
    (3, &["telemetry"]),
    // The trace buffer; the listeners' TLS and bearer tokens.
    (4, &["assembly", "auth", "tls"]),
    // The forwarder (it re-sends the buffer's spans).
    (5, &["forward"]),
    // The OTLP receivers (into the buffer and the forwarder).
    (6, &["ingest"]),
    // What consumes the stages: the analysis stage, the API, the offline command.
    (7, &["pipeline", "api", "offline"]),
    // The wiring.
    (8, &["app"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .find(|(_, modules)| modules.contains(&module))
        .map(|(layer, _)| *layer)
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file belongs to: `src/config/cli.rs` → `config`, `src/model.rs` → `model`.
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src_dir()).expect("under src/");
    let first = rel.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.strip_suffix(".rs").unwrap_or(&name).to_string()
}

/// The files a `mod name;` declared in `file` can live in.
fn child_files(file: &Path, name: &str) -> [PathBuf; 2] {
    let stem = file.file_stem().expect("a stem").to_string_lossy();
    let dir = match stem.as_ref() {
        "mod" | "lib" | "main" => file.parent().expect("a parent").to_path_buf(),
        _ => file.with_extension(""),
    };
    [
        dir.join(format!("{name}.rs")),
        dir.join(name).join("mod.rs"),
    ]
}

/// The code of `text` without its test modules and comments, and the files of the
/// test modules it declares (`#[cfg(test)] mod tests;`).
fn shipped_code(file: &Path, text: &str) -> (Vec<String>, Vec<PathBuf>) {
    let mut code = Vec::new();
    let mut test_files = Vec::new();
    let mut cfg_test = false;
    // The indentation of the inline test module being skipped.
    let mut skipping: Option<String> = None;
    for line in text.lines() {
        if let Some(indent) = &skipping {
            if line == format!("{indent}}}") {
                skipping = None;
            }
            continue;
        }
        let trimmed = line.trim();
        if trimmed.starts_with("//") || trimmed.is_empty() {
            continue;
        }
        if trimmed == "#[cfg(test)]" {
            cfg_test = true;
            continue;
        }
        if cfg_test && trimmed.starts_with("#[") {
            continue;
        }
        if cfg_test {
            cfg_test = false;
            let decl = trimmed
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub ");
            if let Some(rest) = decl.strip_prefix("mod ") {
                let name = rest.trim_end_matches(['{', ';', ' ']);
                if rest.trim_end().ends_with('{') {
                    let indent = &line[..line.len() - line.trim_start().len()];
                    skipping = Some(indent.to_string());
                } else {
                    test_files.extend(child_files(file, name));
                }
            }
            // Any other test-only item (a `use`, a helper) is left out too: one line.
            continue;
        }
        code.push(line.to_string());
    }
    (code, test_files)
}

/// The modules named by `crate::NAME` in a line of code (`crate::{a::x, b}` too).
fn crate_paths(line: &str, out: &mut BTreeSet<String>) {
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `faultline_crate::`, not ours
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
}

/// Module → the modules its shipped code imports (itself left out).
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    files.sort();
    let mut test_only: BTreeSet<PathBuf> = BTreeSet::new();
    let mut texts = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read a source file");
        let (_, tests) = shipped_code(file, &text);
        test_only.extend(tests);
        texts.push((file.clone(), text));
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in &texts {
        let name = file.file_name().expect("a name").to_string_lossy();
        if file.parent() == Some(src_dir().as_path()) && (name == "lib.rs" || name == "main.rs") {
            continue;
        }
        // `name.rs`, `name/mod.rs` and anything in the folder `name/` of a test-only
        // module are test code.
        if test_only
            .iter()
            .any(|t| file == t || file.starts_with(t.with_extension("")))
        {
            continue;
        }
        let module = module_of(file);
        let (code, _) = shipped_code(file, text);
        let mut imports = BTreeSet::new();
        for line in &code {
            crate_paths(line, &mut imports);
        }
        imports.remove(&module);
        graph.entry(module).or_default().extend(imports);
    }
    graph
}

/// An import circle between modules, if there is one (depth-first search).
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut circle = path[start..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(circle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(circle);
        }
    }
    None
}

#[test]
fn every_module_of_src_has_a_layer() {
    let graph = import_graph();
    let unknown: Vec<&String> = graph
        .iter()
        .flat_map(|(m, imports)| std::iter::once(m).chain(imports))
        .filter(|m| layer_of(m).is_none())
        .collect();
    assert!(
        unknown.is_empty(),
        "modules without a layer (add them to LAYERS and docs/architecture.md): {unknown:?}"
    );
}

#[test]
fn no_import_circle_between_modules() {
    let graph = import_graph();
    assert_eq!(
        find_circle(&graph),
        None,
        "import circle; graph: {graph:#?}"
    );
}

#[test]
fn imports_only_run_down_the_layers() {
    let mut wrong = Vec::new();
    for (module, imports) in import_graph() {
        let Some(from) = layer_of(&module) else {
            continue;
        };
        for import in imports {
            if let Some(to) = layer_of(&import) {
                if to >= from {
                    wrong.push(format!("{module} (layer {from}) -> {import} (layer {to})"));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that do not run down the layers (docs/architecture.md):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_reader_sees_test_code_and_grouped_paths_as_they_are() {
    let text = "use crate::model::Span;\nuse crate::{store, telemetry::metrics};\n\
                // crate::nothing in a comment\n#[cfg(test)]\nuse crate::eval;\n\
                #[cfg(test)]\nmod tests {\n    use crate::app;\n}\nfn f() { crate::tls::x(); }\n";
    let file = src_dir().join("pipeline.rs");
    let (code, test_files) = shipped_code(&file, text);
    let mut found = BTreeSet::new();
    for line in &code {
        crate_paths(line, &mut found);
    }
    let found: Vec<&str> = found.iter().map(String::as_str).collect();
    assert_eq!(found, ["model", "store", "telemetry", "tls"]);
    assert!(test_files.is_empty());
    let (_, test_files) = shipped_code(&file, "#[cfg(test)]\nmod proptests;\n");
    assert_eq!(test_files[0], src_dir().join("pipeline/proptests.rs"));
    // A circle is found.
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]
    .into();
    assert_eq!(
        find_circle(&graph),
        Some(vec!["a".to_string(), "b".to_string(), "a".to_string()])
    );
}
