//! Fingerprint tests on real stack traces (fixtures/stacks/, each with its
//! provenance) and on the grouping rules of docs/contract.md §3.

use super::stack::{parse, Language, ParsedStack};
use super::*;

macro_rules! fixture {
    ($name:literal) => {
        strip_header(include_str!(concat!(
            "../../../tests/fixtures/stacks/",
            $name
        )))
    };
}

/// Fixtures open with `# source: …` provenance lines, which are not trace.
fn strip_header(s: &str) -> &str {
    let mut rest = s;
    while rest.starts_with('#') {
        rest = rest.split_once('\n').map_or("", |(_, r)| r);
    }
    rest
}

fn parsed(text: &str) -> ParsedStack {
    parse(text).unwrap_or_else(|| panic!("not parsed:\n{text}"))
}

fn fp(ty: &str, msg: &str, stack: &str, span: &str) -> Fingerprint {
    fingerprint(
        &ExceptionInfo {
            exception_type: ty,
            message: msg,
            stacktrace: stack,
        },
        span,
    )
    .unwrap_or_else(|| panic!("no fingerprint"))
}

fn in_app_functions(p: &ParsedStack) -> Vec<&str> {
    p.frames
        .iter()
        .filter(|f| f.in_app)
        .map(|f| f.function.as_str())
        .collect()
}

// ---------------------------------------------------------------- parsers

#[test]
fn node_typeerror_frames_and_type() {
    let p = parsed(fixture!("node-typeerror-a.txt"));
    assert_eq!(p.language, Language::JavaScript);
    assert_eq!(p.exception_type.as_deref(), Some("TypeError"));
    assert_eq!(
        p.message.as_deref(),
        Some("Cannot read properties of null (reading 'name')")
    );
    assert_eq!(p.frames[0].function, "mapProfileResponse");
    assert_eq!(p.frames[0].file, "profile.js");
    assert_eq!(p.frames[0].line, Some(6));
    assert_eq!(
        in_app_functions(&p),
        ["mapProfileResponse", "getProfile", ""]
    );
    assert_eq!(p.frames.len(), 9);
}

#[test]
fn node_async_esm_library_and_raw_uncaught_output() {
    let p = parsed(fixture!("node-async.txt"));
    assert_eq!(
        in_app_functions(&p),
        ["OrderService.totalFor", "handleRequest"]
    );

    let p = parsed(fixture!("node-esm-constructor.txt"));
    assert_eq!(p.exception_type.as_deref(), Some("ValidationError"));
    assert_eq!(
        in_app_functions(&p),
        ["new Invoice", "buildInvoice", "", ""]
    );
    assert!(p.frames.iter().all(|f| !f.in_app || f.file == "ctor.mjs"));

    let p = parsed(fixture!("node-library.txt"));
    assert_eq!(p.exception_type.as_deref(), Some("SyntaxError"));
    let lib: Vec<bool> = p.frames.iter().map(|f| f.in_app).collect();
    assert_eq!(&lib[..5], [false, false, false, true, true]);

    let p = parsed(fixture!("node-toplevel-raw.txt"));
    assert_eq!(p.exception_type.as_deref(), Some("TypeError"));
    assert_eq!(
        p.message.as_deref(),
        Some("Cannot read properties of null (reading 'port')")
    );
    assert_eq!(p.frames[0].file, "toplevel.js");
    assert_eq!(p.frames.len(), 7);
}

#[test]
fn python_frames_innermost_first_and_chain_uses_last_block() {
    let p = parsed(fixture!("python-keyerror-a.txt"));
    assert_eq!(p.language, Language::Python);
    assert_eq!(p.exception_type.as_deref(), Some("KeyError"));
    assert_eq!(p.message.as_deref(), Some("'customer'"));
    assert_eq!(
        in_app_functions(&p),
        ["price_order", "handle_request", "<module>"]
    );
    assert_eq!(p.frames[0].file, "orders.py");

    let p = parsed(fixture!("python-chained.txt"));
    assert_eq!(p.exception_type.as_deref(), Some("KeyError"));
    assert_eq!(in_app_functions(&p), ["checkout", "<module>"]);

    let p = parsed(fixture!("python-library.txt"));
    assert_eq!(
        p.exception_type.as_deref(),
        Some("json.decoder.JSONDecodeError")
    );
    let flags: Vec<(&str, bool)> = p
        .frames
        .iter()
        .map(|f| (f.function.as_str(), f.in_app))
        .collect();
    assert_eq!(
        flags,
        [
            ("raw_decode", false),
            ("decode", false),
            ("loads", false),
            ("_decode", false),
            ("loads", false),
            ("parse_stock", true),
            ("handler", true),
            ("<module>", true)
        ]
    );

    let p = parsed(fixture!("python-attributeerror.txt"));
    assert_eq!(p.exception_type.as_deref(), Some("AttributeError"));
    assert_eq!(in_app_functions(&p)[0], "render_profile");
}

#[test]
fn jvm_root_cause_lambdas_and_library_frames() {
    let p = parsed(fixture!("jvm-caused-by-a.txt"));
    assert_eq!(p.language, Language::Jvm);
    assert_eq!(
        p.exception_type.as_deref(),
        Some("java.lang.NullPointerException")
    );
    assert_eq!(
        in_app_functions(&p),
        [
            "com.acme.orders.OrderController$OrderRepository.customerName",
            "com.acme.orders.OrderController$OrderService.lambda$namesFor",
            "com.acme.orders.OrderController$OrderService.namesFor"
        ]
    );
    assert_eq!(p.frames[0].file, "OrderController.java");
    assert_eq!(p.frames[0].line, Some(16));
    assert_eq!(p.frames.len(), 10);

    let hidden = parsed(fixture!("jvm-caused-by-moved-hidden-frames.txt"));
    assert_eq!(in_app_functions(&hidden), in_app_functions(&p));

    let p = parsed(fixture!("jvm-numberformat.txt"));
    assert_eq!(
        p.exception_type.as_deref(),
        Some("java.lang.NumberFormatException")
    );
    assert_eq!(
        in_app_functions(&p),
        [
            "com.acme.orders.Pricing.parsePrice",
            "com.acme.orders.Pricing.main"
        ]
    );
}

#[test]
fn go_panics_and_debug_stack() {
    let p = parsed(fixture!("go-nil-pointer-method.txt"));
    assert_eq!(p.language, Language::Go);
    assert_eq!(p.exception_type.as_deref(), Some("runtime.Error"));
    assert_eq!(
        p.message.as_deref(),
        Some("invalid memory address or nil pointer dereference")
    );
    assert_eq!(in_app_functions(&p), ["main.(*User).Greet", "main.main"]);
    assert_eq!(p.frames[0].file, "main.go");

    let p = parsed(fixture!("go-http-panic-gorilla.txt"));
    assert_eq!(p.exception_type.as_deref(), Some("runtime.Error"));
    assert_eq!(in_app_functions(&p), ["rpc.(*ProxyServer).pipeProxy"]);
    assert!(!p.frames[0].in_app, "net/http frame");

    let p = parsed(fixture!("go-http-panic-imageproxy.txt"));
    assert_eq!(in_app_functions(&p), ["proxy.(*Proxy).ServeHTTP"]);

    let p = parsed(fixture!("go-http-panic-roadrunner.txt"));
    assert!(
        in_app_functions(&p).is_empty(),
        "trimpath module frames are dependencies"
    );

    let p = parsed(fixture!("go-custom-panic.txt"));
    assert_eq!(
        (p.exception_type.as_deref(), p.message.as_deref()),
        (Some("panic"), Some("Want stack trace"))
    );
    assert_eq!(in_app_functions(&p), ["main.Example", "main.main"]);

    let p = parsed(fixture!("go-debug-stack.txt"));
    assert_eq!(p.exception_type, None);
    assert_eq!(
        in_app_functions(&p),
        [
            "main.printStack",
            "main.f",
            "main.f",
            "main.f",
            "main.f",
            "main.main"
        ]
    );
}

#[test]
fn dotnet_root_cause_is_the_innermost_exception() {
    let p = parsed(fixture!("dotnet-inner-exception.txt"));
    assert_eq!(p.language, Language::DotNet);
    assert_eq!(p.exception_type.as_deref(), Some("System.Exception"));
    assert_eq!(p.message.as_deref(), Some("Hello Exception!"));
    assert_eq!(
        in_app_functions(&p),
        [
            "TestExceptionGenerator.Spike.GetException",
            "TestExceptionGenerator.Spike.GetInnerException"
        ]
    );
    assert_eq!(p.frames[0].file, "Spike.cs");
    assert_eq!(p.frames[0].line, Some(29));

    let p = parsed(fixture!("dotnet-nullreference.txt"));
    assert_eq!(
        p.exception_type.as_deref(),
        Some("System.NullReferenceException")
    );
    assert_eq!(
        in_app_functions(&p),
        ["WindowsFormsApplication1.Form1.button1_Click"]
    );
    assert_eq!(p.frames[0].file, "Form1.cs");
    assert_eq!(p.frames.len(), 4);
}

#[test]
fn ruby_both_quote_styles_and_library_frames() {
    let legacy = parsed(fixture!("ruby-zerodivision-legacy.txt"));
    assert_eq!(legacy.language, Language::Ruby);
    assert_eq!(legacy.exception_type.as_deref(), Some("ZeroDivisionError"));
    assert_eq!(legacy.message.as_deref(), Some("divided by 0"));
    let modern = parsed(fixture!("ruby-zerodivision-34.txt"));
    assert_eq!(modern.exception_type.as_deref(), Some("ZeroDivisionError"));
    assert_eq!(in_app_functions(&legacy), ["/", "divide", "<main>"]);
    assert_eq!(in_app_functions(&modern), in_app_functions(&legacy));

    let p = parsed(fixture!("ruby-runtimeerror-legacy.txt"));
    assert_eq!(p.exception_type.as_deref(), Some("RuntimeError"));
    assert_eq!(
        in_app_functions(&p),
        ["partridges", "turtle_doves", "<main>"]
    );

    let p = parsed(fixture!("ruby-nomethod-gem.txt"));
    assert_eq!(p.exception_type.as_deref(), Some("NoMethodError"));
    assert!(p.frames.iter().all(|f| !f.in_app));
    assert_eq!(p.frames[0].function, "block in extract_to_array_of_lines");

    let p = parsed(fixture!("ruby-34-internal.txt"));
    assert_eq!(p.exception_type.as_deref(), Some("ArgumentError"));
    assert!(p.frames.iter().all(|f| !f.in_app));
    assert_eq!(p.frames[3].file, "kernel_require.rb");
}

// ---------------------------------------------------------------- grouping

#[test]
fn same_node_bug_across_hosts_paths_and_moved_lines_has_one_id() {
    let a = fp(
        "TypeError",
        "Cannot read properties of null (reading 'name')",
        fixture!("node-typeerror-a.txt"),
        "GET /profile/:id",
    );
    let b = fp(
        "TypeError",
        "Cannot read properties of null (reading 'name')",
        fixture!("node-typeerror-b.txt"),
        "GET /profile/:id",
    );
    let moved = fp(
        "TypeError",
        "",
        fixture!("node-typeerror-moved.txt"),
        "GET /profile/:id",
    );
    assert_eq!(a.id, b.id);
    assert_eq!(a.id, moved.id);
    assert_eq!(
        a.text,
        "TypeError|mapProfileResponse|Cannot read properties of null (reading <*>)"
    );
    assert_eq!(a.id.len(), 16);
    assert!(a.id.bytes().all(|c| c.is_ascii_hexdigit()));
}

#[test]
fn same_python_bug_across_install_paths_and_moved_lines_has_one_id() {
    let a = fp(
        "KeyError",
        "'customer'",
        fixture!("python-keyerror-a.txt"),
        "POST /orders",
    );
    let b = fp(
        "builtins.KeyError",
        "'customer'",
        fixture!("python-keyerror-b.txt"),
        "POST /orders",
    );
    let moved = fp(
        "KeyError",
        "'customer'",
        fixture!("python-keyerror-moved.txt"),
        "POST /orders",
    );
    assert_eq!(a.id, b.id);
    assert_eq!(a.id, moved.id);
    assert_eq!(a.text, "KeyError|price_order|<*>");
}

#[test]
fn same_jvm_bug_across_requests_and_releases_has_one_id() {
    let a = fp(
        "java.lang.RuntimeException",
        "request failed for order A-1001",
        fixture!("jvm-caused-by-a.txt"),
        "GET /orders/{id}",
    );
    let b = fp(
        "java.lang.RuntimeException",
        "request failed for order B-77",
        fixture!("jvm-caused-by-b.txt"),
        "GET /orders/{id}",
    );
    let moved = fp(
        "java.lang.RuntimeException",
        "request failed for order C-9",
        fixture!("jvm-caused-by-moved-hidden-frames.txt"),
        "GET /orders/{id}",
    );
    assert_eq!(a.id, b.id);
    assert_eq!(a.id, moved.id);
    assert!(a.text.starts_with("java.lang.NullPointerException|com.acme.orders.OrderController$OrderRepository.customerName|"), "{}", a.text);
}

#[test]
fn ruby_upgrade_to_34_backtrace_format_keeps_the_id() {
    let legacy = fp(
        "ZeroDivisionError",
        "divided by 0",
        fixture!("ruby-zerodivision-legacy.txt"),
        "GET /divide",
    );
    let modern = fp(
        "ZeroDivisionError",
        "divided by 0",
        fixture!("ruby-zerodivision-34.txt"),
        "GET /divide",
    );
    assert_eq!(legacy.id, modern.id);
}

#[test]
fn different_function_or_type_gives_a_different_id() {
    let profile = fp("TypeError", "", fixture!("node-typeerror-a.txt"), "GET /x");
    let other_function = fp(
        "TypeError",
        "",
        fixture!("node-typeerror-other.txt"),
        "GET /x",
    );
    assert_ne!(profile.id, other_function.id);

    let keyerror = fp("KeyError", "", fixture!("python-keyerror-a.txt"), "GET /x");
    let typeerror = fp(
        "TypeError",
        "",
        fixture!("python-typeerror-other.txt"),
        "GET /x",
    );
    assert_ne!(keyerror.id, typeerror.id);

    // Same frames, another exception type.
    let stack = fixture!("python-keyerror-a.txt").replace(
        "KeyError: 'customer'",
        "IndexError: list index out of range",
    );
    let indexerror = fp("IndexError", "", &stack, "GET /x");
    assert_ne!(keyerror.id, indexerror.id);

    let npe = fp("", "", fixture!("jvm-caused-by-a.txt"), "GET /x");
    let nfe = fp("", "", fixture!("jvm-numberformat.txt"), "GET /x");
    assert_ne!(npe.id, nfe.id);
}

#[test]
fn message_values_do_not_split_a_stack_group() {
    let stack = fixture!("node-typeerror-a.txt");
    let a = fp(
        "TypeError",
        "Cannot read properties of null (reading 'name')",
        stack,
        "GET /x",
    );
    let other_msg = stack.replace("(reading 'name')", "(reading 'email')");
    let b = fp(
        "TypeError",
        "Cannot read properties of null (reading 'email')",
        &other_msg,
        "GET /x",
    );
    let c = fp(
        "TypeError",
        "something else entirely",
        &other_msg.replace("Cannot read properties of null", "boom"),
        "other span",
    );
    assert_eq!(a.id, b.id);
    assert_eq!(a.id, c.id);
}

#[test]
fn without_a_stack_the_message_template_and_span_name_group() {
    let a = fp(
        "TimeoutError",
        "query timed out after 3000ms on shard 12",
        "",
        "SELECT orders",
    );
    let b = fp(
        "TimeoutError",
        "query timed out after 120ms on shard 7",
        "",
        "SELECT orders",
    );
    assert_eq!(a.id, b.id);
    assert_eq!(
        a.text,
        "TimeoutError|SELECT orders|query timed out after <*> on shard <*>"
    );
    let other_span = fp(
        "TimeoutError",
        "query timed out after 3000ms on shard 12",
        "",
        "SELECT users",
    );
    assert_ne!(a.id, other_span.id);
    let other_message = fp(
        "TimeoutError",
        "connection reset by peer",
        "",
        "SELECT orders",
    );
    assert_ne!(a.id, other_message.id);
}

#[test]
fn library_only_stack_falls_back_to_the_message_template() {
    let a = fp(
        "NoMethodError",
        "",
        fixture!("ruby-nomethod-gem.txt"),
        "rake clean",
    );
    assert_eq!(
        a.text,
        "NoMethodError|rake clean|undefined method <*> for nil:NilClass"
    );
    let other = fp(
        "NoMethodError",
        "",
        &fixture!("ruby-nomethod-gem.txt").replace("`[]'", "`each'"),
        "rake clean",
    );
    assert_eq!(a.id, other.id, "the method name is a quoted value");
}

#[test]
fn no_exception_means_no_fingerprint() {
    assert_eq!(fingerprint(&ExceptionInfo::default(), "GET /"), None);
    assert_eq!(
        fingerprint(
            &ExceptionInfo {
                exception_type: " ",
                message: "\n",
                stacktrace: ""
            },
            "GET /"
        ),
        None
    );
    assert!(fingerprint(
        &ExceptionInfo {
            exception_type: "",
            message: "boom",
            stacktrace: ""
        },
        "GET /"
    )
    .is_some());
}

#[test]
fn types_are_normalised() {
    let a = fp("builtins.KeyError", "'x'", "", "s");
    let b = fp("KeyError", "'y'", "", "s");
    assert_eq!(a.id, b.id);
    // OpenTelemetry Python records the class name; the trace prints the module path.
    let with_stack = fp("JSONDecodeError", "", fixture!("python-library.txt"), "s");
    assert!(
        with_stack.text.starts_with("JSONDecodeError|parse_stock|"),
        "{}",
        with_stack.text
    );
}

#[test]
fn ids_are_pinned_across_builds() {
    // A stable hash: this value must never change without bumping ALGORITHM_VERSION.
    let a = fp("KeyError", "'customer'", "", "GET /orders");
    assert_eq!(
        a.id,
        hash_id(&["message", "KeyError", "<*>", "GET /orders"])
    );
    assert_eq!(
        hash_id(&["x"]),
        format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64("fp1\u{1f}x".as_bytes())
        )
    );
}

// ---------------------------------------------------------------- robustness

/// A small deterministic PRNG (xorshift64*), so the fuzz loop needs no crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const ALL_FIXTURES: &[&str] = &[
    include_str!("../../../tests/fixtures/stacks/node-typeerror-a.txt"),
    include_str!("../../../tests/fixtures/stacks/node-async.txt"),
    include_str!("../../../tests/fixtures/stacks/node-esm-constructor.txt"),
    include_str!("../../../tests/fixtures/stacks/node-library.txt"),
    include_str!("../../../tests/fixtures/stacks/node-toplevel-raw.txt"),
    include_str!("../../../tests/fixtures/stacks/python-chained.txt"),
    include_str!("../../../tests/fixtures/stacks/python-library.txt"),
    include_str!("../../../tests/fixtures/stacks/jvm-caused-by-moved-hidden-frames.txt"),
    include_str!("../../../tests/fixtures/stacks/go-http-panic-gorilla.txt"),
    include_str!("../../../tests/fixtures/stacks/go-debug-stack.txt"),
    include_str!("../../../tests/fixtures/stacks/dotnet-inner-exception.txt"),
    include_str!("../../../tests/fixtures/stacks/ruby-34-internal.txt"),
    include_str!("../../../tests/fixtures/stacks/ruby-zerodivision-legacy.txt"),
];

#[test]
fn truncated_and_mangled_fixtures_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for text in ALL_FIXTURES {
        let bounds: Vec<usize> = text
            .char_indices()
            .map(|(i, _)| i)
            .chain([text.len()])
            .collect();
        for &end in bounds.iter().step_by(5) {
            let cut = &text[..end];
            let _ = parse(cut);
            let _ = fingerprint(
                &ExceptionInfo {
                    exception_type: "",
                    message: "",
                    stacktrace: cut,
                },
                "s",
            );
        }
        for _ in 0..200 {
            // Splice random slices of the fixture together and insert noise.
            let a = bounds[rng.below(bounds.len())];
            let b = bounds[rng.below(bounds.len())];
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let mut s = String::from(&text[lo..hi]);
            let noise = [
                "\n",
                "\tat ",
                "    at (",
                ":",
                "---> ",
                "Caused by: ",
                "goroutine 1 [running]:\n",
                "File \"",
                "\u{0}",
                "é🙂",
                "`'",
                "(((",
                ")",
            ];
            s.insert_str(rng.below(2) * s.len(), noise[rng.below(noise.len())]);
            let _ = parse(&s);
            let _ = fingerprint(
                &ExceptionInfo {
                    exception_type: "T",
                    message: &s,
                    stacktrace: &s,
                },
                &s,
            );
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(42);
    let alphabet: Vec<char> = "ab Z09:/\\.()[]<>'\"`$#@-_+\t\n\r|é🙂at File line in from goroutine panic Caused by ---> ..."
        .chars()
        .collect();
    for _ in 0..3000 {
        let len = rng.below(300);
        let s: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        let _ = parse(&s);
        let _ = message_template(&s);
        let _ = fingerprint(
            &ExceptionInfo {
                exception_type: &s,
                message: &s,
                stacktrace: &s,
            },
            &s,
        );
    }
}
