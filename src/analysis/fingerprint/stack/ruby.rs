//! Ruby backtraces as `Exception#full_message` prints them (the form
//! OpenTelemetry Ruby records): `/app/models/user.rb:12:in 'User#name':
//! undefined method 'x' for nil (NoMethodError)` then
//! `\tfrom /app/…:7:in 'block in foo'`. Both the classic quoting
//! (`` in `foo' ``) and Ruby 3.4's (`in 'Klass#foo'`) are read; a plain
//! `Exception#backtrace` (one location per line) is read too.
//!
//! Normalised so the same bug keeps its fingerprint across a Ruby upgrade:
//! the class qualifier Ruby 3.4 adds is dropped (`User#name`, `User.find` →
//! `name`, `find`), as is block nesting depth (`block (2 levels) in run` →
//! `block in run`).
//!
//! Library frames: paths containing `/gems/`, `/ruby/<digit>` (the standard
//! library, `/lib/ruby/3.4.0/`), `/rubygems/`, `vendor/bundle`, and
//! `<internal:…>` locations.

use super::{base_name, lazy_regex, lines, parse_line, Frame, Language, ParsedStack};

lazy_regex!(
    FRAME,
    r"^\s*(?:from\s+)?(.+?):(\d+):in [`']([^'`]*)[`']?(?::\s?(.*))?$"
);
lazy_regex!(TRAILING_TYPE, r"^(.*)\s\(([A-Z][\w:]*)\)\s*$");
lazy_regex!(LEVELS, r"^block \(\d+ levels\) in ");
lazy_regex!(STDLIB, r"/ruby/\d");

/// Parses a Ruby backtrace.
pub(super) fn parse(text: &str) -> Option<ParsedStack> {
    let mut frames = Vec::new();
    let mut exception_type = None;
    let mut message: Option<String> = None;
    for line in lines(text) {
        if let Some(caps) = FRAME.captures(line) {
            let path = caps.get(1).map_or("", |m| m.as_str());
            let label = caps.get(3).map_or("", |m| m.as_str());
            let line_no = caps.get(2).and_then(|m| parse_line(m.as_str()));
            if frames.is_empty() {
                if let Some(rest) = caps.get(4) {
                    let (msg, ty) = split_type(rest.as_str());
                    message = Some(msg);
                    exception_type = ty;
                }
            }
            frames.push(frame(path, label, line_no));
            continue;
        }
        // A multi-line message continues on the following lines; Ruby prints
        // the `(Type)` at the end of the message's first line or its last.
        if frames.len() == 1 && !line.trim_start().starts_with("from ") {
            if let Some(m) = message.as_mut() {
                let (more, ty) = split_type(line);
                m.push('\n');
                m.push_str(&more);
                if exception_type.is_none() {
                    exception_type = ty;
                }
            }
        }
    }
    if frames.is_empty() {
        return None;
    }
    Some(ParsedStack {
        exception_type,
        message,
        frames,
        language: Language::Ruby,
    })
}

fn split_type(rest: &str) -> (String, Option<String>) {
    match TRAILING_TYPE.captures(rest) {
        Some(c) => (
            c.get(1).map_or("", |m| m.as_str()).to_string(),
            c.get(2).map(|m| m.as_str().to_string()),
        ),
        None => (rest.to_string(), None),
    }
}

fn frame(path: &str, label: &str, line: Option<u32>) -> Frame {
    let internal = path.starts_with("<internal:");
    let clean_path = path.trim_start_matches("<internal:").trim_end_matches('>');
    let p = clean_path.replace('\\', "/");
    let library = internal
        || p.contains("/gems/")
        || p.contains("/rubygems/")
        || p.contains("vendor/bundle")
        || STDLIB.is_match(&p);
    Frame {
        function: normalize_label(label),
        file: base_name(clean_path),
        in_app: !library,
        line,
        raw_function: label.to_string(),
        raw_path: path.to_string(),
    }
}

/// `block (2 levels) in User#name` → `block in name`; `Integer#/` → `/`.
fn normalize_label(label: &str) -> String {
    let label = LEVELS.replace(label.trim(), "block in ");
    let (prefix, method) = match label.rfind(" in ") {
        Some(i) => (&label[..i + 4], &label[i + 4..]),
        None => ("", &label[..]),
    };
    // Ruby 3.4 qualifies methods: `Klass#m`, `Klass.m`, `Mod::Klass#m`.
    let bare = if method.starts_with('<') {
        method
    } else {
        match method.rfind(['#', '.']) {
            Some(i) if i + 1 < method.len() => &method[i + 1..],
            _ => method,
        }
    };
    format!("{prefix}{bare}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_from_both_ruby_styles_agree() {
        assert_eq!(normalize_label("DivisionService#divide"), "divide");
        assert_eq!(normalize_label("divide"), "divide");
        assert_eq!(
            normalize_label("block (2 levels) in RubyNext::Core.patch"),
            "block in patch"
        );
        assert_eq!(normalize_label("Integer#/"), "/");
        assert_eq!(normalize_label("<main>"), "<main>");
        assert_eq!(normalize_label("<top (required)>"), "<top (required)>");
    }
}
