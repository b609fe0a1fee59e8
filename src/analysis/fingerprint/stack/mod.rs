//! Stack-trace parsing: detects the format of an `exception.stacktrace`
//! (JavaScript/V8, Python, JVM, Go, .NET, Ruby), splits it into frames
//! (innermost first), marks library frames, and strips everything that
//! changes between hosts, deployments and releases (line and column numbers,
//! directories, addresses, lambda and closure numbering, bundler hashes).
//!
//! Pure text processing; depends on nothing but `regex`. Never panics: every
//! parser works line by line on whatever text it is given.

mod dotnet;
mod go;
mod jvm;
mod python;
mod ruby;
mod v8;

/// Longest stack trace (in bytes) that is parsed; the rest is ignored, so a
/// pathological attribute cannot cost unbounded time.
const MAX_STACK_BYTES: usize = 256 * 1024;
/// Most frames kept per parsed stack.
const MAX_FRAMES: usize = 512;

/// The runtime whose stack-trace format was recognised.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Language {
    /// JavaScript on V8 (Node.js, Deno, Chrome): `    at fn (file.js:1:2)`.
    JavaScript,
    /// CPython: `Traceback (most recent call last):` / `  File "x.py", line 1, in f`.
    Python,
    /// Java, Kotlin, Scala: `\tat com.acme.Foo.bar(Foo.java:42)`, `Caused by:`.
    Jvm,
    /// Go panics and `runtime/debug.Stack()`: `goroutine 1 [running]:`.
    Go,
    /// .NET `Exception.ToString()`: `   at A.B.C() in /src/C.cs:line 42`.
    DotNet,
    /// Ruby `Exception#full_message` / backtraces: `app.rb:12:in 'A#b'`.
    Ruby,
}

/// One stack frame, normalised for grouping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Function as used for grouping: qualified as the runtime prints it, but
    /// without lambda/closure numbers, compiler-generated suffixes, argument
    /// lists or `async` markers. Empty for anonymous functions.
    pub function: String,
    /// Base name of the source file (no directories, no URL scheme, no bundler
    /// hash); empty when the runtime did not print one.
    pub file: String,
    /// Whether the frame is the application's own code (not the runtime, the
    /// standard library or a third-party package).
    pub in_app: bool,
    /// Line number as printed, for display only: it never enters a fingerprint.
    pub line: Option<u32>,
    /// The function exactly as printed.
    pub raw_function: String,
    /// The path or location exactly as printed.
    pub raw_path: String,
}

/// A parsed stack trace: the exception it describes and its frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedStack {
    /// Exception type read from the trace itself, for the exception chosen
    /// for grouping (see each format's module for which one of a chain).
    pub exception_type: Option<String>,
    /// Message of that exception, as printed.
    pub message: Option<String>,
    /// Frames of that exception, innermost (throwing) first.
    pub frames: Vec<Frame>,
    /// The detected format.
    pub language: Language,
}

pub(crate) use super::template::lazy_regex;

lazy_regex!(GO_GOROUTINE, r"(?m)^goroutine \d+ \[[^\]]*\]:\s*$");
lazy_regex!(GO_PANIC, r"(?m)^(?:panic: |fatal error: )");
lazy_regex!(PY_FRAME, r#"(?m)^\s*File "[^"]*", line \d+"#);
lazy_regex!(RUBY_FRAME, r"(?m)^\s*(?:from\s+)?\S.*?:\d+:in [`']");
lazy_regex!(AT_LINE, r"(?m)^\s*at\s+\S.*$");
lazy_regex!(
    JVM_AT,
    r"^\s*at\s+[\w$.<>/\-]+\((?:[^()]*\.(?:java|kt|kts|scala|groovy|clj|gradle):\d+|Native Method|Unknown Source|[^()]*\.(?:java|kt|scala))\)"
);
lazy_regex!(
    DOTNET_AT,
    r"(?:\) in .*:line \d+\s*$|\)\s*$|\[0x[0-9a-f]+\] in )"
);
lazy_regex!(
    V8_AT,
    r"(?::\d+:\d+\)?\s*$|\((?:<anonymous>|native|index \d+)\)\s*$)"
);

/// Parses a stack trace in any of the supported formats, detected from its
/// text. `None` when no format is recognised (no frame and no exception line).
pub fn parse(stacktrace: &str) -> Option<ParsedStack> {
    let text = crate::analysis::fingerprint::template::truncate_bytes(stacktrace, MAX_STACK_BYTES);
    if text.trim().is_empty() {
        return None;
    }
    parse_as(text, detect(text)?)
}

/// Parses a stack trace as `language`, skipping detection: what [`parse`] does once it
/// has picked the format. Public so the fuzz targets reach every parser with any text;
/// the same bounds apply (the first `MAX_STACK_BYTES`, at most `MAX_FRAMES` frames).
pub fn parse_as(stacktrace: &str, language: Language) -> Option<ParsedStack> {
    let text = crate::analysis::fingerprint::template::truncate_bytes(stacktrace, MAX_STACK_BYTES);
    let mut parsed = match language {
        Language::Python => python::parse(text),
        Language::Go => go::parse(text),
        Language::Ruby => ruby::parse(text),
        Language::Jvm => jvm::parse(text),
        Language::DotNet => dotnet::parse(text),
        Language::JavaScript => v8::parse(text),
    }?;
    parsed.frames.truncate(MAX_FRAMES);
    Some(parsed)
}

/// Picks the format. Formats with a unique marker first (Python's `File "…"`,
/// Go's `goroutine N [...]:`), then `at` lines voted by shape, then Ruby.
fn detect(text: &str) -> Option<Language> {
    if text.contains("Traceback (most recent call last)") || PY_FRAME.is_match(text) {
        return Some(Language::Python);
    }
    if GO_GOROUTINE.is_match(text) || GO_PANIC.is_match(text) {
        return Some(Language::Go);
    }
    let (mut jvm, mut dotnet, mut js) = (0usize, 0usize, 0usize);
    for m in AT_LINE.find_iter(text).take(64) {
        let line = m.as_str();
        if JVM_AT.is_match(line) {
            jvm += 1;
        } else if V8_AT.is_match(line) {
            js += 1;
        } else if DOTNET_AT.is_match(line) {
            dotnet += 1;
        }
    }
    if text.contains(" ---> ") || text.contains("--- End of inner exception stack trace ---") {
        dotnet += 2;
    }
    if text.contains("\nCaused by: ") {
        jvm += 2;
    }
    let best = jvm.max(dotnet).max(js);
    if best > 0 {
        return Some(if best == jvm {
            Language::Jvm
        } else if best == js {
            Language::JavaScript
        } else {
            Language::DotNet
        });
    }
    if RUBY_FRAME.is_match(text) {
        return Some(Language::Ruby);
    }
    None
}

/// The last component of a path or URL: no directories (either separator), no
/// scheme, query or fragment, and no bundler content hash
/// (`main.3f2a1b9c.js` and `index-BdH3kL9x.js` become `main.js`, `index.js`).
pub(crate) fn base_name(path: &str) -> String {
    let p = path.trim();
    let p = p.split(['?', '#']).next().unwrap_or(p);
    let last = p.rsplit(['/', '\\']).next().unwrap_or(p);
    strip_bundle_hash(last.trim_end_matches('>'))
}

fn strip_bundle_hash(name: &str) -> String {
    // Split "stem.ext" once; hashes sit in the stem, joined by '.' or '-'.
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    let mut kept = String::with_capacity(name.len());
    let mut start = 0;
    for (i, c) in stem
        .char_indices()
        .chain(std::iter::once((stem.len(), '.')))
    {
        if c == '.' || c == '-' || i == stem.len() {
            let seg = &stem[start..i];
            if !(start > 0 && is_hash_like(seg)) {
                if start > 0 {
                    // keep the separator that preceded this segment
                    kept.push_str(&stem[start - 1..start]);
                }
                kept.push_str(seg);
            }
            start = i + 1;
        }
    }
    kept.push_str(ext);
    kept
}

/// A bundler or build hash: 8+ hex chars with a digit, or an 8-char base64url
/// token mixing upper case, lower case and digits (Vite/Rollup).
fn is_hash_like(seg: &str) -> bool {
    let n = seg.len();
    let has_digit = seg.bytes().any(|b| b.is_ascii_digit());
    if n >= 8 && has_digit && seg.bytes().all(|b| b.is_ascii_hexdigit()) {
        return true;
    }
    n == 8
        && has_digit
        && seg.bytes().any(|b| b.is_ascii_uppercase())
        && seg.bytes().any(|b| b.is_ascii_lowercase())
        && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parses a decimal line number, `None` when absent or out of range.
pub(crate) fn parse_line(s: &str) -> Option<u32> {
    s.trim().parse().ok()
}

/// The lines of `text` without trailing `\r` (CRLF traces from Windows).
pub(crate) fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(|l| l.trim_end_matches('\r'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_name_drops_dirs_schemes_and_hashes() {
        assert_eq!(base_name("/srv/b/app/profile.js"), "profile.js");
        assert_eq!(base_name("file:///srv/b/app/ctor.mjs"), "ctor.mjs");
        assert_eq!(base_name(r"c:\Code\x\Spike.cs"), "Spike.cs");
        assert_eq!(
            base_name("https://cdn.x.com/static/js/main.3f2a1b9c.chunk.js?v=2"),
            "main.chunk.js"
        );
        assert_eq!(base_name("/assets/index-BdH3kL9x.js"), "index.js");
        assert_eq!(base_name("/app/user-service.js"), "user-service.js");
        assert_eq!(
            base_name("<internal:/x/kernel_require.rb>"),
            "kernel_require.rb"
        );
        assert_eq!(base_name(""), "");
    }

    #[test]
    fn garbage_is_not_a_stack() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("   \n "), None);
        assert_eq!(parse("hello world"), None);
    }
}
