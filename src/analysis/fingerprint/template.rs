//! Message templates: the variable parts of an exception message (numbers,
//! ids, quoted values, hex, UUIDs, e-mail and IP addresses, URLs and paths)
//! replaced by `<*>`, as log-template miners such as Drain do, so that
//! "order 17 not found" and "order 99 not found" read the same.
//!
//! Pure string processing; depends on nothing but `regex`.

/// The placeholder that stands for a variable value.
pub const PLACEHOLDER: &str = "<*>";

/// Longest message (in bytes, cut at a char boundary) that is templated; the
/// rest is dropped before any regex runs, so a huge message costs little.
const MAX_INPUT_BYTES: usize = 4096;
/// Longest template returned, in chars.
const MAX_OUTPUT_CHARS: usize = 240;

macro_rules! lazy_regex {
    ($name:ident, $re:expr) => {
        static $name: ::std::sync::LazyLock<::regex::Regex> = ::std::sync::LazyLock::new(|| {
            // The patterns are constants, exercised by the unit tests below.
            #[allow(clippy::expect_used)]
            ::regex::Regex::new($re).expect("constant regex")
        });
    };
}
// The one definition: the stack parsers take it from here.
pub(crate) use lazy_regex;

lazy_regex!(URL, r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\x22<>()]+");
lazy_regex!(EMAIL, r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b");
lazy_regex!(
    UUID,
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
);
lazy_regex!(
    TIMESTAMP,
    r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"
);
lazy_regex!(IPV4, r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b");
lazy_regex!(
    IPV6,
    r"\[?\b(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{1,4}\b\]?(?::\d{1,5})?|\[::1?\](?::\d{1,5})?"
);
// A path starts the message or follows a space, `=`, `(`, `[` or `,`, so
// "and/or" stays; group 1 keeps that leading char.
lazy_regex!(PATH, r#"(^|[\s=(\[,])(?:[A-Za-z]:\\|~?/)[^\s'"<>():,;]+"#);
lazy_regex!(HEX_PREFIXED, r"\b0[xX][0-9a-fA-F]+\b");
lazy_regex!(MIXED_ID, r"\b[\w-]*\d[\w-]*\b");
lazy_regex!(NUMBER, r"[-+]?\b\d+(?:[.,]\d+)*\b");
lazy_regex!(REPEATED, r"<\*>(?:[\s.:/_-]*<\*>)+");
lazy_regex!(SPACES, r"\s+");

/// Turns an exception message into its template: numbers, ids, quoted values,
/// hex, UUIDs, e-mail and IP addresses, URLs, timestamps and paths become
/// `<*>`, whitespace runs become one space, and the result is at most
/// 240 chars.
///
/// `Cannot read properties of null (reading 'name')` becomes
/// `Cannot read properties of null (reading <*>)`.
pub fn message_template(message: &str) -> String {
    let input = truncate_bytes(message, MAX_INPUT_BYTES);
    // Order matters: whole values (quoted, URL, UUID, address) go before their
    // digits could be taken for numbers.
    let mut out = replace_quoted(input);
    for re in [&URL, &EMAIL, &UUID, &TIMESTAMP, &IPV6, &IPV4] {
        out = re.replace_all(&out, PLACEHOLDER).into_owned();
    }
    out = PATH.replace_all(&out, "${1}<*>").into_owned();
    out = HEX_PREFIXED.replace_all(&out, PLACEHOLDER).into_owned();
    out = replace_mixed_ids(&out);
    out = NUMBER.replace_all(&out, PLACEHOLDER).into_owned();
    out = REPEATED.replace_all(&out, PLACEHOLDER).into_owned();
    out = SPACES.replace_all(out.trim(), " ").into_owned();
    truncate_chars(&out, MAX_OUTPUT_CHARS)
}

/// Identifiers that mix letters and digits (`A-1001`, `user42`, `ord_8f3k2j9x`)
/// are values, except short ones such as `utf8`, `v2` or `sha256`.
fn replace_mixed_ids(s: &str) -> String {
    MIXED_ID
        .replace_all(s, |caps: &regex::Captures<'_>| {
            let word = caps.get(0).map_or("", |m| m.as_str());
            if word.len() >= 7 || word.chars().filter(char::is_ascii_digit).count() >= 3 {
                PLACEHOLDER.to_string()
            } else {
                word.to_string()
            }
        })
        .into_owned()
}

/// Replaces `'…'`, `"…"`, `` `…' `` and `` `…` `` spans by `<*>`. A quote only
/// opens after a non-alphanumeric char and only closes before one, so the
/// apostrophe in "Shouldn't" is left alone.
fn replace_quoted(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let opens = matches!(c, '\'' | '"' | '`' | '\u{2018}' | '\u{201c}')
            && (i == 0 || !chars[i - 1].is_alphanumeric());
        if opens {
            let closers: &[char] = match c {
                '\'' => &['\''],
                '"' => &['"'],
                '`' => &['\'', '`'],
                '\u{2018}' => &['\u{2019}'],
                _ => &['\u{201d}'],
            };
            let mut j = i + 1;
            let mut close = None;
            while j < chars.len() && chars[j] != '\n' && j - i <= 512 {
                if closers.contains(&chars[j])
                    && (j + 1 == chars.len() || !chars[j + 1].is_alphanumeric())
                {
                    close = Some(j);
                    break;
                }
                j += 1;
            }
            if let Some(end) = close {
                out.push_str(PLACEHOLDER);
                i = end + 1;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
pub(crate) fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn truncate_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_replaced_but_apostrophes_are_not() {
        assert_eq!(
            message_template("Cannot read properties of null (reading 'name')"),
            "Cannot read properties of null (reading <*>)"
        );
        assert_eq!(
            message_template(
                r#"Cannot invoke "java.util.Map.get(Object)" because "<local2>" is null"#
            ),
            "Cannot invoke <*> because <*> is null"
        );
        assert_eq!(
            message_template("undefined method `[]' for nil:NilClass"),
            "undefined method <*> for nil:NilClass"
        );
        assert_eq!(
            message_template("Shouldn't this be recursive?"),
            "Shouldn't this be recursive?"
        );
        assert_eq!(message_template("'customer'"), "<*>");
    }

    #[test]
    fn numbers_are_replaced() {
        assert_eq!(
            message_template("invoice total must be >= 0, got -12.5"),
            "invoice total must be >= <*>, got <*>"
        );
        assert_eq!(
            message_template("line 1 column 2 (char 1)"),
            "line <*> column <*> (char <*>)"
        );
    }

    #[test]
    fn uuids_hex_and_ids_are_replaced() {
        assert_eq!(
            message_template("order 3f2504e0-4f89-11d3-9a0c-0305e82c3301 not found"),
            "order <*> not found"
        );
        assert_eq!(
            message_template("bad pointer 0x7f32a8000400"),
            "bad pointer <*>"
        );
        assert_eq!(
            message_template("commit deadbeef12 missing"),
            "commit <*> missing"
        );
        assert_eq!(
            message_template("could not load order A-1001"),
            "could not load order <*>"
        );
        assert_eq!(
            message_template("session ord_8f3k2j9x expired"),
            "session <*> expired"
        );
        assert_eq!(message_template("utf8 decode failed"), "utf8 decode failed");
    }

    #[test]
    fn emails_ips_urls_and_paths_are_replaced() {
        assert_eq!(
            message_template("no user ann.lee+x@example.co.uk"),
            "no user <*>"
        );
        assert_eq!(
            message_template("dial tcp 10.0.3.7:5432: connection refused"),
            "dial tcp <*>: connection refused"
        );
        assert_eq!(
            message_template("connect to [::1]:6379 failed"),
            "connect to <*> failed"
        );
        assert_eq!(
            message_template("GET https://api.example.com/v1/users/42?x=1 returned 502"),
            "GET <*> returned <*>"
        );
        assert_eq!(
            message_template("open /var/data/tenant-7/report.csv: no such file"),
            "open <*>: no such file"
        );
        assert_eq!(
            message_template(r"Could not find C:\app\cfg\settings.json"),
            "Could not find <*>"
        );
    }

    #[test]
    fn timestamps_and_whitespace_are_normalised() {
        assert_eq!(
            message_template("lock held since 2024-05-01T10:22:33.123Z\n  by   worker"),
            "lock held since <*> by worker"
        );
    }

    #[test]
    fn same_shape_with_other_values_gives_same_template() {
        let a = message_template("timeout after 3000ms calling 10.1.2.3:80 for user 'bob'");
        let b = message_template("timeout after 120ms calling 10.9.9.9:8080 for user 'alice'");
        assert_eq!(a, b);
    }

    #[test]
    fn huge_and_multibyte_messages_do_not_panic() {
        let big = "é🙂'x".repeat(5000);
        let t = message_template(&big);
        assert!(t.chars().count() <= MAX_OUTPUT_CHARS);
        assert_eq!(truncate_bytes("é", 1), "");
    }
}
