//! Go panics and goroutine dumps: `panic: msg` (or a recovered
//! `http: panic serving ADDR: msg`, or `fatal error: msg`), an optional
//! `[signal SIGSEGV …]` line, `goroutine 1 [running]:`, then frame pairs
//! `pkg.Func(args…)` / `\t/path/file.go:12 +0x1d`, ending in
//! `created by pkg.Func`. `runtime/debug.Stack()` output (no `panic:` line)
//! is read the same way. Only the first goroutine (the panicking one) counts.
//!
//! Go has no exception types: a `runtime error:` panic gets the type
//! `runtime.Error`, any other panic `panic`, a fatal error `fatal error`, and a
//! bare goroutine dump none.
//!
//! Normalised: argument lists, `+0x…` offsets, closure numbering
//! (`handler.func1.2` → `handler.func`, `gowrap2`, `deferwrap1`, the old
//! `func·009`), and the import path before the last `/`
//! (`github.com/acme/api/rpc.(*S).m` → `rpc.(*S).m`, stable across forks and
//! vendoring).
//!
//! Library frames: the standard library (by package: `runtime`, `net/http`,
//! `database/sql`, … — the top-level std package names below; `main` is
//! always in-app), module-cache paths (`/pkg/mod/`), versioned module paths
//! (`@v1.2.3`, as `-trimpath` prints them) and `/vendor/`.

use super::{base_name, lazy_regex, lines, parse_line, Frame, Language, ParsedStack};

lazy_regex!(GOROUTINE, r"^goroutine \d+ \[[^\]]*\]:\s*$");
lazy_regex!(
    PANIC,
    r"(?:^|\s)(?:panic: |http: panic serving (.*?): )(.*)$"
);
lazy_regex!(IN_GOROUTINE, r" in goroutine \d+$");
lazy_regex!(
    LOCATION,
    r"^\s+(.+?):(\d+)(?:\s+\+0x[0-9a-fA-F]+)?(?:\s+fp=.*)?\s*$"
);
lazy_regex!(CLOSURE, r"\.(func|gowrap|deferwrap)(?:\d+|·\d+)(?:\.\d+)*");

/// Top-level packages of the Go standard library (the first element of the
/// import path), used to tell std frames from application frames.
const STD_TOP_LEVEL: &[&str] = &[
    "archive",
    "bufio",
    "builtin",
    "bytes",
    "cmp",
    "compress",
    "container",
    "context",
    "crypto",
    "database",
    "debug",
    "embed",
    "encoding",
    "errors",
    "expvar",
    "flag",
    "fmt",
    "go",
    "hash",
    "html",
    "image",
    "index",
    "internal",
    "io",
    "iter",
    "log",
    "maps",
    "math",
    "mime",
    "net",
    "os",
    "path",
    "plugin",
    "reflect",
    "regexp",
    "runtime",
    "slices",
    "sort",
    "strconv",
    "strings",
    "sync",
    "syscall",
    "testing",
    "text",
    "time",
    "unicode",
    "unique",
    "unsafe",
    "weak",
    "vendor",
    "panic",
    "goexit",
];

/// Parses a Go panic or goroutine dump.
pub(super) fn parse(text: &str) -> Option<ParsedStack> {
    let mut exception_type = None;
    let mut message = None;
    let mut frames = Vec::new();
    let mut in_goroutine = false;
    let mut pending: Option<String> = None;
    for line in lines(text) {
        if !in_goroutine {
            if message.is_none() {
                if let Some(caps) = PANIC.captures(line) {
                    let msg = caps.get(2).map_or("", |m| m.as_str());
                    let msg = msg
                        .trim_end_matches(" [recovered]")
                        .trim_end_matches(" [recovered, repanicked]");
                    let (ty, msg) = match msg.strip_prefix("runtime error: ") {
                        Some(rest) => ("runtime.Error", rest),
                        None => ("panic", msg),
                    };
                    exception_type = Some(ty.to_string());
                    message = Some(msg.to_string());
                    continue;
                }
                if let Some(rest) = line.strip_prefix("fatal error: ") {
                    exception_type = Some("fatal error".to_string());
                    message = Some(rest.to_string());
                    continue;
                }
            }
            if GOROUTINE.is_match(line) {
                in_goroutine = true;
            }
            continue;
        }
        if line.trim().is_empty() || GOROUTINE.is_match(line) {
            if !frames.is_empty() {
                break;
            }
            continue;
        }
        if let Some(caps) = LOCATION.captures(line) {
            if let Some(func) = pending.take() {
                let path = caps.get(1).map_or("", |m| m.as_str());
                let line_no = caps.get(2).and_then(|m| parse_line(m.as_str()));
                if let Some(f) = frame(&func, path, line_no) {
                    frames.push(f);
                }
            }
            continue;
        }
        if !line.starts_with([' ', '\t']) {
            pending = function_name(line.trim_end());
        }
    }
    if frames.is_empty() && exception_type.is_none() {
        return None;
    }
    Some(ParsedStack {
        exception_type,
        message,
        frames,
        language: Language::Go,
    })
}

fn frame(raw_function: &str, path: &str, line: Option<u32>) -> Option<Frame> {
    // The panic machinery itself is not a frame of the failing code.
    if raw_function == "panic" || raw_function == "runtime.gopanic" {
        return None;
    }
    let package_path = package_path(raw_function);
    let top = package_path.split('/').next().unwrap_or("");
    let std = package_path != "main" && !top.contains('.') && STD_TOP_LEVEL.contains(&top);
    let p = path.replace('\\', "/");
    let library = std
        || p.contains("/pkg/mod/")
        || p.contains("/vendor/")
        || (p.contains('@') && !p.starts_with('/'))
        || p.contains("/src/runtime/")
        || p.starts_with("runtime/")
        || p == "<autogenerated>";
    let short = raw_function.rsplit('/').next().unwrap_or(raw_function);
    Some(Frame {
        function: CLOSURE
            .replace_all(short, ".$1")
            .trim_end_matches('.')
            .to_string(),
        file: base_name(path),
        in_app: !library,
        line,
        raw_function: raw_function.to_string(),
        raw_path: path.to_string(),
    })
}

/// The function of a Go frame line: `main.(*User).Greet(...)` →
/// `main.(*User).Greet`, `created by net/http.(*Server).Serve in goroutine 9`
/// → `net/http.(*Server).Serve`. Arguments never contain `(`, so the
/// argument list is the part from the last `(` when the line ends in `)`.
fn function_name(line: &str) -> Option<String> {
    let line = line.strip_prefix("created by ").unwrap_or(line);
    let line = IN_GOROUTINE.replace(line, "");
    let name = match (line.ends_with(')'), line.rfind('(')) {
        (true, Some(i)) if i > 0 => &line[..i],
        _ => &line[..],
    };
    if name.is_empty() || name.contains(' ') {
        return None;
    }
    Some(name.to_string())
}

/// The import path of a Go function name: `net/http.(*conn).serve` →
/// `net/http`, `main.main` → `main`, `github.com/a/b.F` → `github.com/a/b`.
fn package_path(function: &str) -> &str {
    let last_slash = function.rfind('/').map_or(0, |i| i + 1);
    match function[last_slash..].find('.') {
        Some(dot) => &function[..last_slash + dot],
        None => function,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closure_numbers_and_import_paths_are_dropped() {
        let f = frame(
            "github.com/acme/api/rpc.(*S).handle.func1.2",
            "/app/rpc/s.go",
            Some(3),
        );
        let f = f.unwrap_or_else(|| panic!("frame"));
        assert_eq!(f.function, "rpc.(*S).handle.func");
        assert!(f.in_app);
        let f = frame("net/http.(*conn).serve.func1", "net/http/server.go", None);
        assert!(!f.unwrap_or_else(|| panic!("frame")).in_app);
        let f = frame(
            "net/http.func·009",
            "/usr/local/go/src/pkg/net/http/server.go",
            None,
        );
        assert_eq!(f.unwrap_or_else(|| panic!("frame")).function, "http.func");
        assert_eq!(package_path("main.main"), "main");
    }
}
