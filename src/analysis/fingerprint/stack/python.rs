//! CPython tracebacks: `Traceback (most recent call last):`, frames
//! `  File "/abs/x.py", line 10, in handler` (each followed by the source
//! line and, since 3.11, caret lines), then `KeyError: 'x'`.
//!
//! Chained exceptions ("During handling of the above exception, another
//! exception occurred:" and "The above exception was the direct cause of the
//! following exception:") print the oldest exception first; the LAST block is
//! the exception actually raised out of the handler, the one the span's
//! `exception.type` names, so that block is the one fingerprinted (the same
//! choice as Python's own `traceback.format_exception` puts last, and as Sentry
//! groups on the raised exception). Python frames print outermost first; they
//! are reversed here to innermost first.
//!
//! Library frames: paths containing `site-packages`, `dist-packages`,
//! `/lib/python3.` / `/lib/python2.` (the standard library), `<frozen …>`.

use super::{base_name, lazy_regex, lines, parse_line, Frame, Language, ParsedStack};

lazy_regex!(FRAME, r#"^\s*File "([^"]*)", line (\d+)(?:, in (.*))?\s*$"#);
lazy_regex!(EXCEPTION_LINE, r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$");

const CHAIN_MARKERS: [&str; 2] = [
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
];

#[derive(Default)]
struct Block {
    frames: Vec<Frame>,
    exception_type: Option<String>,
    message: Option<String>,
    /// The exception line was seen; following lines continue its message.
    closed: bool,
}

/// Parses a Python traceback; the last block of a chain is returned.
pub(super) fn parse(text: &str) -> Option<ParsedStack> {
    let mut blocks = vec![Block::default()];
    for raw in lines(text) {
        // Exception groups (3.11) prefix lines with `  | `; read through them.
        let line = raw.trim_start_matches([' ', '|', '+']).trim_end();
        let line_for_frame = raw.trim_start_matches(['|', '+', ' ']);
        let Some(block) = blocks.last_mut() else {
            break;
        };
        if CHAIN_MARKERS.iter().any(|m| line.contains(m)) {
            blocks.push(Block::default());
            continue;
        }
        if line.starts_with("Traceback (most recent call last)") {
            if block.closed {
                blocks.push(Block::default());
            }
            continue;
        }
        if let Some(caps) = FRAME.captures(line_for_frame) {
            if block.closed {
                blocks.push(Block::default());
            }
            let path = caps.get(1).map_or("", |m| m.as_str());
            let func = caps.get(3).map_or("", |m| m.as_str().trim());
            let frame = Frame {
                function: func.to_string(),
                file: base_name(path),
                in_app: is_app_path(path),
                line: caps.get(2).and_then(|m| parse_line(m.as_str())),
                raw_function: func.to_string(),
                raw_path: path.to_string(),
            };
            if let Some(b) = blocks.last_mut() {
                b.frames.push(frame);
            }
            continue;
        }
        if block.closed {
            if !line.is_empty() {
                if let Some(m) = block.message.as_mut() {
                    m.push('\n');
                    m.push_str(line);
                }
            }
            continue;
        }
        // Source lines and carets are indented; the exception line is not.
        let at_column_zero = !raw.starts_with(' ') && !raw.starts_with('\t');
        if at_column_zero || (!block.frames.is_empty() && raw.starts_with("  | ")) {
            if let Some(caps) = EXCEPTION_LINE.captures(line) {
                block.exception_type = caps.get(1).map(|m| m.as_str().to_string());
                block.message = Some(caps.get(2).map_or("", |m| m.as_str()).to_string());
                block.closed = true;
            }
        }
    }
    let block = blocks
        .into_iter()
        .rev()
        .find(|b| b.exception_type.is_some() || !b.frames.is_empty())?;
    let mut frames = block.frames;
    frames.reverse();
    Some(ParsedStack {
        exception_type: block.exception_type,
        message: block.message,
        frames,
        language: Language::Python,
    })
}

fn is_app_path(path: &str) -> bool {
    let p = path.replace('\\', "/");
    !(p.contains("site-packages")
        || p.contains("dist-packages")
        || p.contains("/lib/python3.")
        || p.contains("/lib/python2.")
        || p.starts_with("<frozen")
        || p.contains("/lib/pypy"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_line_without_message() {
        let p = parse("Traceback (most recent call last):\n  File \"/a/x.py\", line 1, in <module>\n    f()\nStopIteration\n");
        let p = p.unwrap_or_else(|| panic!("parsed"));
        assert_eq!(p.exception_type.as_deref(), Some("StopIteration"));
        assert_eq!(p.message.as_deref(), Some(""));
    }
}
