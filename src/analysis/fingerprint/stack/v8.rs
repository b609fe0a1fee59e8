//! JavaScript stack traces as V8 prints them (`Error.prototype.stack` in
//! Node.js): a header `TypeError: message` then frames
//! `    at fn (/abs/file.js:10:5)`, `    at /abs/file.js:10:5`,
//! `    at async fn (…)`, `    at new Foo (…)`, `    at Object.<anonymous> (…)`,
//! `    at JSON.parse (<anonymous>)`, `node:internal/…` and `file:///` URLs.
//! Text before the header (Node's uncaught-error source excerpt) is skipped.
//!
//! Library frames: paths under `node_modules`, Node internals (`node:` and the
//! pre-v16 `internal/` form) and native frames (`<anonymous>`, `native`).

use super::{base_name, lazy_regex, lines, parse_line, Frame, Language, ParsedStack};

lazy_regex!(FRAME, r"^\s*at\s+(?:(.+?)\s+\((.*)\)|(.+?))\s*$");
lazy_regex!(LOCATION, r"^(.*?)(?::(\d+))?(?::(\d+))?$");
lazy_regex!(
    HEADER,
    r"^([A-Za-z_$][\w$.]*)(?:\s+\[[\w-]+\])?(?::\s?(.*))?$"
);
lazy_regex!(ALIAS, r"\s*\[as [^\]]*\]$");

/// Parses a V8 stack trace.
pub(super) fn parse(text: &str) -> Option<ParsedStack> {
    let mut exception_type = None;
    let mut message: Option<String> = None;
    let mut frames = Vec::new();
    let mut in_frames = false;
    for line in lines(text) {
        if let Some(caps) = FRAME.captures(line) {
            in_frames = true;
            let (func, loc) = match (caps.get(1), caps.get(2), caps.get(3)) {
                (Some(f), Some(l), _) => (f.as_str(), l.as_str()),
                (_, _, Some(l)) => ("", l.as_str()),
                _ => continue,
            };
            frames.push(frame(func, loc));
            continue;
        }
        if in_frames {
            // A second error printed after the first stack (e.g. `[cause]`) is
            // not this exception's; stop at the end of the first stack.
            if line.trim().is_empty() || !line.starts_with(' ') {
                break;
            }
            continue;
        }
        if exception_type.is_none() {
            if let Some(caps) = HEADER.captures(line.trim_end()) {
                let name = caps.get(1).map_or("", |m| m.as_str());
                // "Error"-like names only, so the source excerpt Node prints
                // above an uncaught error is not taken for a header.
                if caps.get(2).is_some() || looks_like_error_name(name) {
                    exception_type = Some(name.to_string());
                    message = Some(caps.get(2).map_or("", |m| m.as_str()).to_string());
                }
            }
        } else if let Some(m) = message.as_mut() {
            // multi-line message continues until the first frame
            m.push('\n');
            m.push_str(line);
        }
    }
    if frames.is_empty() && exception_type.is_none() {
        return None;
    }
    Some(ParsedStack {
        exception_type,
        message: message.map(|m| m.trim_end().to_string()),
        frames,
        language: Language::JavaScript,
    })
}

fn looks_like_error_name(name: &str) -> bool {
    name.ends_with("Error") || name.ends_with("Exception") || name == "Error"
}

fn frame(raw_function: &str, raw_location: &str) -> Frame {
    // `eval at fn (file.js:1:2), <anonymous>:1:1`: the eval'd code's caller
    // location is the meaningful one.
    let loc = raw_location
        .strip_prefix("eval at ")
        .and_then(|rest| rest.split_once('(').map(|(_, r)| r))
        .map(|r| r.split(')').next().unwrap_or(r))
        .unwrap_or(raw_location);
    let (path, line) = match LOCATION.captures(loc) {
        Some(c) => (
            c.get(1).map_or(loc, |m| m.as_str()),
            c.get(2).and_then(|m| parse_line(m.as_str())),
        ),
        None => (loc, None),
    };
    let native = matches!(path, "<anonymous>" | "native" | "")
        || path.starts_with("index ")
        || path.starts_with("node:")
        || path.starts_with("internal/");
    let in_app = !native && !path.contains("/node_modules/") && !path.contains("\\node_modules\\");
    Frame {
        function: normalize_function(raw_function),
        file: if native {
            String::new()
        } else {
            base_name(path)
        },
        in_app,
        line,
        raw_function: raw_function.to_string(),
        raw_path: raw_location.to_string(),
    }
}

/// `async fn` → `fn`; `Function.x [as y]` → `Function.x`;
/// `Object.<anonymous>` and `<anonymous>` → empty (anonymous).
fn normalize_function(raw: &str) -> String {
    let f = raw.trim();
    let f = f.strip_prefix("async ").unwrap_or(f);
    let f = ALIAS.replace(f, "");
    if f.contains("<anonymous>") {
        let rest = f.replace("<anonymous>", "");
        let rest = rest.trim_matches('.');
        return if rest == "Object" {
            String::new()
        } else {
            rest.to_string()
        };
    }
    f.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_shapes() {
        let f = frame("async handleRequest", "/srv/b/app/async_orders.js:19:10");
        assert_eq!(
            (f.function.as_str(), f.file.as_str(), f.in_app, f.line),
            ("handleRequest", "async_orders.js", true, Some(19))
        );
        let f = frame("Object.<anonymous>", "/srv/b/app/stock.js:13:7");
        assert_eq!((f.function.as_str(), f.in_app), ("", true));
        let f = frame(
            "Module._compile",
            "node:internal/modules/cjs/loader:1521:14",
        );
        assert!(!f.in_app);
        let f = frame("JSON.parse", "<anonymous>");
        assert!(!f.in_app);
        let f = frame(
            "Function.executeUserEntryPoint [as runMain]",
            "node:internal/modules/run_main:164:12",
        );
        assert_eq!(f.function, "Function.executeUserEntryPoint");
        let f = frame(
            "parseBody",
            "/srv/b/app/node_modules/fastparse/index.js:3:15",
        );
        assert!(!f.in_app);
        let f = frame("", "file:///srv/b/app/ctor.mjs:18:16");
        assert_eq!((f.file.as_str(), f.in_app), ("ctor.mjs", true));
        let f = frame("render", "webpack-internal:///./src/main.4f3a2b1c9d.js:7:1");
        assert_eq!(f.file, "main.js");
    }
}
