//! .NET stack traces as `Exception.ToString()` prints them:
//! `System.InvalidOperationException: outer ---> System.NullReferenceException: inner`
//! (or one ` ---> ` per line in .NET Core), then the innermost exception's
//! frames `   at Acme.Handler.Get(Int32 id) in /src/Handler.cs:line 42`,
//! `   --- End of inner exception stack trace ---`, the next exception's frames,
//! and so on outwards. Async traces interleave
//! `--- End of stack trace from previous location ---`, which is ignored.
//! Mono's `at A.B (args) [0x00011] in <hash>:0` form is read too.
//!
//! The ROOT cause (the innermost exception, the last `--->`) is fingerprinted,
//! with the frames printed before the first "End of inner exception" marker.
//!
//! Normalised: argument lists, generic arguments, async state machines
//! (`<GetAsync>d__12.MoveNext` → `GetAsync`), lambdas
//! (`<Main>b__0_1` → `Main.lambda`), local functions (`<M>g__Local|12_1` →
//! `M.Local`) and closure classes (`<>c__DisplayClass4_0` → `<>c`).
//!
//! Library frames, by namespace: `System.`, `Microsoft.`, `Windows.`,
//! `MS.`, `Mono.`, `Interop`, `Newtonsoft.`, `Grpc.`, `Google.`, `Npgsql.`,
//! `StackExchange.`, `Serilog.`, `NLog.`, `Polly.`, `Castle.`, `Autofac.`,
//! `Dapper.`, `MediatR.`, `FluentValidation.`, `AutoMapper.`,
//! `OpenTelemetry.`, `Swashbuckle.`, `Xunit.`, `NUnit.`, and the
//! runtime-generated `lambda_method`, `CallSite.` and `DynamicClass.`.

use super::{base_name, lazy_regex, lines, parse_line, Frame, Language, ParsedStack};

lazy_regex!(
    FRAME,
    r"^\s*at\s+(.+?)(?:\s+\[0x[0-9a-fA-F]+\])?(?:\s+in\s+(.+?)(?::line\s+(\d+)|:(\d+))?)?\s*$"
);
lazy_regex!(
    HEADER,
    r"^\s*([A-Za-z_][\w.`+<>]*)(?:\s*\(0x[0-9A-Fa-f]+\)|\s*\(-?\d+\))?(?::\s?(.*))?$"
);
lazy_regex!(ASYNC_MACHINE, r"<([^<>]+)>d__\d+(?:`\d+)?\.MoveNext");
lazy_regex!(LAMBDA, r"<([^<>]*)>b__\d+(?:_\d+)?");
lazy_regex!(LOCAL_FN, r"<([^<>]*)>g__([^|]+)\|\d+_\d+");
lazy_regex!(DISPLAY_CLASS, r"<>c__DisplayClass\d+(?:_\d+)?");
lazy_regex!(GENERIC_ARGS, r"\[\[.*?\]\]|\[[A-Za-z_][\w.,\s]*\]");

const LIBRARY_PREFIXES: &[&str] = &[
    "System.",
    "Microsoft.",
    "Windows.",
    "MS.",
    "Mono.",
    "Interop",
    "Newtonsoft.",
    "Grpc.",
    "Google.",
    "Npgsql.",
    "StackExchange.",
    "Serilog.",
    "NLog.",
    "Polly.",
    "Castle.",
    "Autofac.",
    "Dapper.",
    "MediatR.",
    "FluentValidation.",
    "AutoMapper.",
    "OpenTelemetry.",
    "Swashbuckle.",
    "Xunit.",
    "NUnit.",
    "lambda_method",
    "CallSite.",
    "DynamicClass.",
];

/// Parses a .NET `Exception.ToString()`; the innermost exception is returned.
pub(super) fn parse(text: &str) -> Option<ParsedStack> {
    let mut header = String::new();
    let mut frames = Vec::new();
    let mut in_frames = false;
    for line in lines(text) {
        let trimmed = line.trim();
        if trimmed.starts_with("--- End of inner exception stack trace") {
            // Root-cause frames are the ones before the first marker.
            if in_frames {
                break;
            }
            continue;
        }
        if trimmed.starts_with("--- End of stack trace from previous location")
            || trimmed.is_empty()
        {
            continue;
        }
        if trimmed.starts_with("at ") {
            if let Some(caps) = FRAME.captures(line) {
                in_frames = true;
                let func = caps.get(1).map_or("", |m| m.as_str());
                let path = caps.get(2).map_or("", |m| m.as_str());
                let line_no = caps
                    .get(3)
                    .or(caps.get(4))
                    .and_then(|m| parse_line(m.as_str()));
                frames.push(frame(func, path, line_no));
                continue;
            }
        }
        if !in_frames {
            if !header.is_empty() {
                header.push('\n');
            }
            header.push_str(trimmed);
        }
    }
    // The innermost exception is the last `--->` segment of the header.
    let root = header.rsplit("--->").next().unwrap_or(&header).trim();
    let (exception_type, message) = match HEADER.captures(root.lines().next().unwrap_or("")) {
        Some(caps) => {
            let first_rest = caps.get(2).map_or("", |m| m.as_str());
            let more: Vec<&str> = root.lines().skip(1).collect();
            let mut msg = first_rest.to_string();
            for l in more {
                msg.push('\n');
                msg.push_str(l);
            }
            (caps.get(1).map(|m| m.as_str().to_string()), Some(msg))
        }
        None => (
            None,
            if root.is_empty() {
                None
            } else {
                Some(root.to_string())
            },
        ),
    };
    if frames.is_empty() && exception_type.is_none() {
        return None;
    }
    Some(ParsedStack {
        exception_type,
        message: message.map(|m| m.trim_matches(|c| c == '"' || c == ' ').to_string()),
        frames,
        language: Language::DotNet,
    })
}

fn frame(raw_function: &str, path: &str, line: Option<u32>) -> Frame {
    let function = normalize_function(raw_function);
    let in_app = !LIBRARY_PREFIXES.iter().any(|p| function.starts_with(p));
    // Mono prints `in <3f2a…>:0` (an assembly id) when there are no symbols.
    let file = if path.starts_with('<') {
        String::new()
    } else {
        base_name(path)
    };
    Frame {
        function,
        file,
        in_app,
        line,
        raw_function: raw_function.to_string(),
        raw_path: path.to_string(),
    }
}

fn normalize_function(raw: &str) -> String {
    let no_generics = GENERIC_ARGS.replace_all(raw.trim(), "");
    // Drop the argument list: everything from the first '(' on.
    let name = no_generics.split('(').next().unwrap_or("").trim_end();
    let name = ASYNC_MACHINE.replace_all(name, "$1");
    let name = LOCAL_FN.replace_all(&name, "$1.$2");
    let name = LAMBDA.replace_all(&name, "$1.lambda");
    let name = DISPLAY_CLASS.replace_all(&name, "<>c");
    name.replace('+', ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_compiler_generated_names() {
        assert_eq!(
            normalize_function("Acme.Orders.Handler.Get(Int32 id)"),
            "Acme.Orders.Handler.Get"
        );
        assert_eq!(
            normalize_function("Acme.Api.Controller.<GetAsync>d__12.MoveNext()"),
            "Acme.Api.Controller.GetAsync"
        );
        assert_eq!(
            normalize_function("T.Spike.<GenericExceptionWithInnerException>b__1()"),
            "T.Spike.GenericExceptionWithInnerException.lambda"
        );
        assert_eq!(
            normalize_function("A.B.<Run>g__Local|12_1(Int32 x)"),
            "A.B.Run.Local"
        );
        assert_eq!(
            normalize_function("A.B.<>c__DisplayClass4_0.<Go>b__0()"),
            "A.B.<>c.Go.lambda"
        );
        let f = frame(
            "Acme.Orders.Handler.Get(Int32 id)",
            "/src/Handler.cs",
            Some(42),
        );
        assert_eq!((f.file.as_str(), f.in_app), ("Handler.cs", true));
    }
}
