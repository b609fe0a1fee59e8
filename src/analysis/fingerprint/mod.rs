//! Exception fingerprints: a stable id for "the same bug", so 500s can be
//! grouped across requests, hosts, deployment paths and releases that only
//! moved lines (docs/contract.md §3, "Fingerprint").
//!
//! # The grouping algorithm (Sentry-like)
//! 1. No exception at all (empty type, message and stack) → no fingerprint.
//! 2. The stack trace, when present, is parsed ([`stack::parse`]); for a chain
//!    the exception chosen is the JVM's and .NET's root cause and Python's last
//!    (raised) block. Its type, when the trace prints one, is preferred to the
//!    span's `exception.type` (they differ exactly when a wrapper was thrown).
//! 3. The type is normalised: surrounding space trimmed, Python's `builtins.`
//!    / `exceptions.` prefix dropped, and for Python the module path dropped
//!    (`json.decoder.JSONDecodeError` → `JSONDecodeError`, which is what
//!    OpenTelemetry Python records as `exception.type`).
//! 4. In-app frames are taken innermost first, consecutive duplicates
//!    (recursion) collapsed, and the first [`IN_APP_FRAMES`] kept.
//! 5. With at least one in-app frame the grouping components are
//!    `type` + each frame's normalised `function` and file base name — never
//!    the message, line or column numbers, directories, addresses or
//!    generated ids. Without one (no stack, unparseable, or library frames
//!    only) they are `type` + the [`message_template`] + the span name.
//! 6. `id` = the first 16 hex digits of XXH3-64 over the components, joined
//!    with a separator byte and prefixed with a version tag — stable across
//!    processes, platforms and Rust versions (unlike std's `DefaultHasher`).
//!    When the exception's own stack has no in-app frame but the code that made
//!    the failed call raised a wrapper with some ([`Site::call_site_stack`]),
//!    the wrapper's frames are used with the cause's type; when an in-app frame
//!    is an anonymous function (an Express route's arrow function), the
//!    handler serving the request ([`Site::handler`], `GET /products/:sku`) is a
//!    component too, standing in for the missing name.
//! 7. `text` = `type|function|template` for stack groups (the innermost named
//!    in-app function; the template of this occurrence's message, shown but
//!    not hashed) and `type|span name|template` for message groups.
//!
//! Why three frames: one frame merges different bugs that fail in the same
//! helper (a shared `parseJson` called from ten handlers), while the whole
//! stack splits one bug by every caller and middleware path that reaches it.
//! Three is Sentry's and Honeybadger's order of magnitude for "enough context
//! to tell callers apart" and stays stable when code far from the failure
//! is refactored.
//!
//! Pure and deterministic; depends on `regex` and `xxhash-rust` only.

pub mod stack;
pub mod template;

pub use template::message_template;

use stack::{Frame, Language, ParsedStack};

/// How many in-app frames (innermost first) enter a stack-based fingerprint.
pub const IN_APP_FRAMES: usize = 3;

/// Version tag hashed in front of the components; bump it when the algorithm
/// changes so old and new ids cannot collide by accident.
const ALGORITHM_VERSION: &str = "fp1";
/// Separates hashed components (a byte that no component contains).
const SEPARATOR: char = '\u{1f}';

/// The exception attributes of a span event (OpenTelemetry semantic
/// conventions `exception.type`, `exception.message`, `exception.stacktrace`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExceptionInfo<'a> {
    /// `exception.type`, e.g. `TypeError`, `java.lang.IllegalStateException`.
    pub exception_type: &'a str,
    /// `exception.message`.
    pub message: &'a str,
    /// `exception.stacktrace`, in the runtime's own format.
    pub stacktrace: &'a str,
}

/// An error group: readable text and a short stable id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// `type|function|message template` (or `type|span name|message template`
    /// without in-app frames), e.g.
    /// `TypeError|mapProfileResponse|Cannot read properties of null (reading <*>)`.
    pub text: String,
    /// 16 lowercase hex digits, a stable hash of the grouping components only.
    pub id: String,
}

/// Where an exception was raised, beyond its own stack: what the verdict knows about
/// the code path when the stack alone cannot tell it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Site<'a> {
    /// A stack whose in-app frames locate the code that made the failed call, used when
    /// the exception's own stack has none (an instrumented client's copy holds library
    /// frames only; the caller's wrapper shows which code path called).
    pub call_site_stack: &'a str,
    /// The handler serving the request (`GET /products/:sku`), which names the code path
    /// when in-app frames are anonymous functions (`at /srv/app.js:57:30`, an Express
    /// route's arrow function): it stands in for the missing function name.
    pub handler: &'a str,
}

/// Fingerprints one exception seen on a span named `span_name`.
///
/// `None` when there is no exception at all (empty type, message and stack).
pub fn fingerprint(exc: &ExceptionInfo<'_>, span_name: &str) -> Option<Fingerprint> {
    fingerprint_at(exc, span_name, &Site::default())
}

/// [`fingerprint`] with what is known of the site: frames from the call site when the
/// exception has no in-app frame of its own, and the handler in place of anonymous
/// in-app functions.
pub fn fingerprint_at(
    exc: &ExceptionInfo<'_>,
    span_name: &str,
    site: &Site<'_>,
) -> Option<Fingerprint> {
    let given_type = exc.exception_type.trim();
    let given_message = exc.message.trim();
    let stacktrace = exc.stacktrace.trim();
    if given_type.is_empty() && given_message.is_empty() && stacktrace.is_empty() {
        return None;
    }
    let parsed = if stacktrace.is_empty() {
        None
    } else {
        stack::parse(stacktrace)
    };

    let language = parsed.as_ref().map(|p| p.language);
    let parsed_type = parsed
        .as_ref()
        .and_then(|p| p.exception_type.as_deref())
        .filter(|t| !t.trim().is_empty());
    let exception_type = normalize_type(parsed_type.unwrap_or(given_type), language);
    let message = parsed
        .as_ref()
        .and_then(|p| p.message.as_deref())
        .filter(|m| !m.trim().is_empty())
        .unwrap_or(given_message);
    let template = message_template(message);

    let mut frames = parsed.as_ref().map(top_in_app_frames).unwrap_or_default();
    let call_site = if frames.is_empty() && !site.call_site_stack.trim().is_empty() {
        stack::parse(site.call_site_stack)
    } else {
        None
    };
    if let Some(p) = &call_site {
        frames = top_in_app_frames(p);
    }
    if frames.is_empty() {
        let span = span_name.trim();
        let id = hash_id(&["message", &exception_type, &template, span]);
        return Some(Fingerprint {
            text: format!("{exception_type}|{span}|{template}"),
            id,
        });
    }
    let mut components: Vec<String> = vec!["stack".to_string(), exception_type.clone()];
    for f in &frames {
        components.push(format!("{}@{}", f.function, f.file));
    }
    let handler = site.handler.trim();
    let anonymous = frames.iter().any(|f| f.function.is_empty()) && !handler.is_empty();
    if anonymous {
        components.push(format!("handler:{handler}"));
    }
    let refs: Vec<&str> = components.iter().map(String::as_str).collect();
    let id = hash_id(&refs);
    let file_and_handler;
    let shown = match frames.iter().find(|f| !f.function.is_empty()) {
        Some(f) => f.function.as_str(),
        None if anonymous => {
            let file = frames.first().map_or("", |f| f.file.as_str());
            file_and_handler = format!("{file} ({handler})");
            file_and_handler.as_str()
        }
        None => frames.first().map_or("", |f| f.file.as_str()),
    };
    Some(Fingerprint {
        text: format!("{exception_type}|{shown}|{template}"),
        id,
    })
}

/// The first [`IN_APP_FRAMES`] distinct in-app frames, innermost first;
/// consecutive repeats (recursion) count once, and a frame with neither
/// function nor file carries nothing to group on and is skipped.
fn top_in_app_frames(parsed: &ParsedStack) -> Vec<&Frame> {
    let mut out: Vec<&Frame> = Vec::with_capacity(IN_APP_FRAMES);
    for f in parsed.frames.iter().filter(|f| f.in_app) {
        if f.function.is_empty() && f.file.is_empty() {
            continue;
        }
        if out
            .last()
            .is_some_and(|last| last.function == f.function && last.file == f.file)
        {
            continue;
        }
        out.push(f);
        if out.len() == IN_APP_FRAMES {
            break;
        }
    }
    out
}

/// Canonical exception type: trimmed, Python's `builtins.`/`exceptions.`
/// prefix dropped, Python module paths dropped; `Error` when nothing names it.
fn normalize_type(raw: &str, language: Option<Language>) -> String {
    let t = raw.trim();
    let t = t
        .strip_prefix("builtins.")
        .or_else(|| t.strip_prefix("exceptions."))
        .unwrap_or(t);
    let t = if language == Some(Language::Python) {
        t.rsplit('.').next().unwrap_or(t)
    } else {
        t
    };
    // `|` separates the fields of `text`; keep it out of the type.
    let t = t.replace('|', "/");
    if t.is_empty() {
        "Error".to_string()
    } else {
        t
    }
}

fn hash_id(components: &[&str]) -> String {
    let mut buf = String::from(ALGORITHM_VERSION);
    for c in components {
        buf.push(SEPARATOR);
        buf.push_str(c);
    }
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(buf.as_bytes()))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
