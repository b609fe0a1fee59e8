//! Properties of fingerprints (proptest), per stack format: the id does not change when
//! line numbers, column numbers, addresses or the install path change, and it does change
//! when the throwing function or the exception type changes (docs/contract.md §3 "Fingerprint";
//! Go panics carry no type, so for Go only the function).

use proptest::prelude::*;

use super::stack::{parse, Language};
use super::{fingerprint, ExceptionInfo};

/// What varies between two deployments of the same code.
#[derive(Debug, Clone)]
struct Deployment {
    /// Directories the application is installed under (no separator at either end).
    prefix: Vec<&'static str>,
    lines: [u32; 4],
    columns: [u32; 4],
    address: u32,
}

fn deployment() -> impl Strategy<Value = Deployment> {
    (
        proptest::collection::vec(
            prop_oneof![
                Just("srv"),
                Just("opt"),
                Just("home"),
                Just("deploy"),
                Just("releases"),
                Just("20240611"),
                Just("build"),
                Just("w"),
                Just("x86"),
            ],
            0..5,
        ),
        proptest::array::uniform4(1u32..100_000),
        proptest::array::uniform4(1u32..400),
        any::<u32>(),
    )
        .prop_map(|(prefix, lines, columns, address)| Deployment {
            prefix,
            lines,
            columns,
            address,
        })
}

/// The bug: which function threw what.
#[derive(Debug, Clone, PartialEq)]
struct Bug {
    function: &'static str,
    exception: &'static str,
}

fn bug() -> impl Strategy<Value = Bug> {
    (
        prop_oneof![
            Just("priceOrder"),
            Just("applyDiscount"),
            Just("loadCustomer")
        ],
        prop_oneof![Just("KeyError"), Just("TypeError"), Just("ValueError")],
    )
        .prop_map(|(function, exception)| Bug {
            function,
            exception,
        })
}

fn unix_dir(d: &Deployment) -> String {
    d.prefix.iter().map(|p| format!("/{p}")).collect()
}

/// The stack trace `bug` prints in `language` when installed as `d`.
fn render(language: Language, bug: &Bug, d: &Deployment) -> String {
    let (f, t, l, c) = (bug.function, bug.exception, d.lines, d.columns);
    let dir = unix_dir(d);
    match language {
        Language::JavaScript => format!(
            "{t}: Cannot read properties of null (reading 'id')\n    \
             at {f} ({dir}/app/orders.js:{}:{})\n    \
             at handle ({dir}/app/routes.js:{}:{})\n    \
             at Layer.handle ({dir}/app/node_modules/express/lib/router/layer.js:{}:{})\n    \
             at Module._compile (node:internal/modules/cjs/loader:{}:{})",
            l[0], c[0], l[1], c[1], l[2], c[2], l[3], c[3]
        ),
        Language::Python => format!(
            "Traceback (most recent call last):\n  \
             File \"{dir}/venv/lib/python3.11/site-packages/flask/app.py\", line {}, in dispatch\n    \
             rv = self.view()\n  \
             File \"{dir}/app/routes.py\", line {}, in handle\n    \
             return {f}(order)\n  \
             File \"{dir}/app/orders.py\", line {}, in {f}\n    \
             return order[\"customer\"]\n\
             {t}: 'customer'",
            l[0], l[1], l[2]
        ),
        Language::Jvm => format!(
            "com.acme.{t}: bad order\n\
             \tat java.base/java.lang.Integer.parseInt(Integer.java:{})\n\
             \tat com.acme.orders.Pricing.{f}(Pricing.java:{})\n\
             \tat com.acme.orders.Pricing.lambda$handle${}(Pricing.java:{})\n\
             \tat com.acme.orders.Routes.handle(Routes.java:{})",
            l[0],
            l[1],
            c[0] % 10,
            l[2],
            l[3]
        ),
        Language::Go => format!(
            "panic: {t}: bad order\n\n\
             goroutine {} [running]:\n\
             main.{f}(0x{:x})\n\
             \t{dir}/app/orders.go:{} +0x{:x}\n\
             main.handle(...)\n\
             \t{dir}/app/routes.go:{} +0x{:x}\n\
             main.main()\n\
             \t{dir}/app/main.go:{} +0x{:x}",
            c[0],
            d.address,
            l[0],
            c[1],
            l[1],
            c[2],
            l[2],
            c[3]
        ),
        Language::DotNet => {
            let win: String = d.prefix.iter().map(|p| format!("{p}\\")).collect();
            format!(
                "Acme.{t}: bad order\n   \
                 at Acme.Orders.Pricing.{f}(Order order) in C:\\{win}src\\Pricing.cs:line {}\n   \
                 at Acme.Orders.Routes.Handle() in C:\\{win}src\\Routes.cs:line {}\n   \
                 at System.Threading.ExecutionContext.RunInternal(ExecutionContext ctx)",
                l[0], l[1]
            )
        }
        Language::Ruby => format!(
            "{dir}/app/pricing.rb:{}:in 'Pricing#{f}': bad order ({t})\n\
             \tfrom {dir}/app/routes.rb:{}:in 'Routes#handle'\n\
             \tfrom {dir}/app/main.rb:{}:in '<main>'",
            l[0], l[1], l[2]
        ),
    }
}

fn id(language: Language, bug: &Bug, d: &Deployment) -> String {
    let stack = render(language, bug, d);
    // The format must be recognised, or the property would only test the message path.
    let parsed = parse(&stack).unwrap_or_else(|| panic!("not parsed:\n{stack}"));
    assert_eq!(parsed.language, language, "{stack}");
    assert!(
        parsed.frames.iter().any(|f| f.in_app),
        "no in-app frame:\n{stack}"
    );
    fingerprint(
        &ExceptionInfo {
            exception_type: bug.exception,
            message: "bad order",
            stacktrace: &stack,
        },
        "POST /orders",
    )
    .map(|f| f.id)
    .unwrap_or_else(|| panic!("no fingerprint:\n{stack}"))
}

fn any_language() -> impl Strategy<Value = Language> {
    prop_oneof![
        Just(Language::JavaScript),
        Just(Language::Python),
        Just(Language::Jvm),
        Just(Language::Go),
        Just(Language::DotNet),
        Just(Language::Ruby),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn fingerprints_ignore_lines_columns_and_install_paths(
        language in any_language(),
        bug in bug(),
        a in deployment(),
        b in deployment(),
    ) {
        prop_assert_eq!(id(language, &bug, &a), id(language, &bug, &b));
    }

    #[test]
    fn fingerprints_change_with_the_function_or_the_exception_type(
        language in any_language(),
        x in bug(),
        y in bug(),
        d in deployment(),
    ) {
        prop_assume!(x != y);
        // Go has no exception types (every plain panic is `panic`, see `stack::go`):
        // there only the function tells two bugs apart.
        prop_assume!(language != Language::Go || x.function != y.function);
        prop_assert_ne!(id(language, &x, &d), id(language, &y, &d));
    }
}
