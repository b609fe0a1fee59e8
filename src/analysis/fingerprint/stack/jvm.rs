//! JVM stack traces (`Throwable.printStackTrace`, Java, Kotlin, Scala):
//! `java.lang.X: msg` then `\tat com.acme.Foo.bar(Foo.java:42)` frames,
//! `\t... 12 more`, `Caused by: …` blocks and indented `Suppressed: …` blocks.
//!
//! The ROOT cause (the last top-level `Caused by:`) is fingerprinted: wrapper
//! exceptions (`RuntimeException: request failed`) are added by whatever layer
//! caught the failure and say little about the bug, as in Sentry's Java
//! grouping. Its frames are the ones printed under it (the shared tail is
//! elided as `... N more`, and the top in-app frames are what matters).
//! Suppressed exceptions are skipped.
//!
//! Normalised: module prefixes (`java.base/`, `app//`), lambda numbering
//! (`lambda$foo$0` → `lambda$foo`), anonymous and synthetic class numbers
//! (`Foo$1` → `Foo`), Spring CGLIB proxies (`$$EnhancerBySpringCGLIB$$1a2b`,
//! `$$SpringCGLIB$$0`); generated lambda classes (`Foo$$Lambda$14/0x…`, shown
//! with `-XX:+ShowHiddenFrames`) are never in-app.
//!
//! Library frames, by class prefix: `java.`, `javax.`, `jakarta.`, `jdk.`,
//! `sun.`, `com.sun.`, `kotlin.`, `kotlinx.`, `scala.`, `akka.`, `groovy.`,
//! `clojure.`, `org.springframework.`, `org.apache.`, `org.hibernate.`,
//! `org.eclipse.`, `org.glassfish.`, `org.jboss.`, `io.netty.`, `io.grpc.`,
//! `io.micronaut.`, `io.quarkus.`, `io.vertx.`, `io.undertow.`,
//! `io.opentelemetry.`, `io.micrometer.`, `reactor.`, `io.reactivex.`,
//! `rx.`, `com.fasterxml.`, `com.google.`, `com.zaxxer.`, `okhttp3.`, `okio.`,
//! `retrofit2.`, `feign.`, `ch.qos.logback.`, `org.slf4j.`, `org.junit.`,
//! `android.`, `androidx.`, `com.android.`, `dalvik.`, `libcore.`.

use super::{lazy_regex, lines, parse_line, Frame, Language, ParsedStack};

lazy_regex!(FRAME, r"^\s*at\s+([^\s(]+)\(([^)]*)\)");
lazy_regex!(
    HEADER,
    r"^(?:Exception in thread .*?\s)?([A-Za-z_$][\w$.]*(?:\$[\w$]+)?)(?::\s?(.*))?$"
);
lazy_regex!(LAMBDA_NUMBER, r"\$\d+\b|-\d+\b");
lazy_regex!(
    CGLIB,
    r"\$\$(?:EnhancerBy\w*?CGLIB|FastClassBy\w*?CGLIB|SpringCGLIB|HibernateProxy|ByteBuddy)\$\$\w*"
);

const LIBRARY_PREFIXES: &[&str] = &[
    "java.",
    "javax.",
    "jakarta.",
    "jdk.",
    "sun.",
    "com.sun.",
    "kotlin.",
    "kotlinx.",
    "scala.",
    "akka.",
    "groovy.",
    "clojure.",
    "org.springframework.",
    "org.apache.",
    "org.hibernate.",
    "org.eclipse.",
    "org.glassfish.",
    "org.jboss.",
    "io.netty.",
    "io.grpc.",
    "io.micronaut.",
    "io.quarkus.",
    "io.vertx.",
    "io.undertow.",
    "io.opentelemetry.",
    "io.micrometer.",
    "reactor.",
    "io.reactivex.",
    "rx.",
    "com.fasterxml.",
    "com.google.",
    "com.zaxxer.",
    "okhttp3.",
    "okio.",
    "retrofit2.",
    "feign.",
    "ch.qos.logback.",
    "org.slf4j.",
    "org.junit.",
    "android.",
    "androidx.",
    "com.android.",
    "dalvik.",
    "libcore.",
];

#[derive(Default)]
struct Block {
    exception_type: Option<String>,
    message: Option<String>,
    frames: Vec<Frame>,
}

/// Parses a JVM stack trace; the root cause's block is returned.
pub(super) fn parse(text: &str) -> Option<ParsedStack> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut in_suppressed = false;
    let mut seen_frame_in_block = false;
    for line in lines(text) {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let top_level = !line.starts_with([' ', '\t']);
        if let Some(rest) = trimmed.strip_prefix("Caused by: ") {
            if top_level {
                in_suppressed = false;
                seen_frame_in_block = false;
                blocks.push(header_block(rest));
            }
            continue;
        }
        if trimmed.starts_with("Suppressed: ") {
            in_suppressed = true;
            continue;
        }
        if in_suppressed {
            continue;
        }
        if let Some(caps) = FRAME.captures(line) {
            // A frame printed deeper than one tab belongs to a suppressed or
            // nested cause already skipped above.
            if blocks.is_empty() {
                blocks.push(Block::default());
            }
            let func = caps.get(1).map_or("", |m| m.as_str());
            let loc = caps.get(2).map_or("", |m| m.as_str());
            if let Some(b) = blocks.last_mut() {
                b.frames.push(frame(func, loc));
            }
            seen_frame_in_block = true;
            continue;
        }
        if trimmed.starts_with("... ") && trimmed.ends_with(" more") {
            continue;
        }
        if top_level && blocks.is_empty() {
            blocks.push(header_block(trimmed));
            continue;
        }
        // Continuation of a multi-line message.
        if !seen_frame_in_block {
            if let Some(m) = blocks.last_mut().and_then(|b| b.message.as_mut()) {
                m.push('\n');
                m.push_str(trimmed);
            }
        }
    }
    let root = blocks.pop()?;
    if root.exception_type.is_none() && root.frames.is_empty() {
        return None;
    }
    Some(ParsedStack {
        exception_type: root.exception_type,
        message: root.message,
        frames: root.frames,
        language: Language::Jvm,
    })
}

fn header_block(line: &str) -> Block {
    match HEADER.captures(line) {
        Some(caps) => Block {
            exception_type: caps.get(1).map(|m| m.as_str().to_string()),
            message: Some(caps.get(2).map_or("", |m| m.as_str()).to_string()),
            frames: Vec::new(),
        },
        None => Block {
            exception_type: None,
            message: Some(line.to_string()),
            frames: Vec::new(),
        },
    }
}

fn frame(raw_function: &str, location: &str) -> Frame {
    // `java.base/java.util.Foo.bar`, `app//com.acme.Foo.bar`: drop the module.
    let qualified = raw_function.rsplit('/').next().unwrap_or(raw_function);
    let generated = qualified.contains("$$Lambda") || location == "Unknown Source";
    let (file, line) = match location.split_once(':') {
        Some((f, l)) => (f, parse_line(l)),
        None if location.contains('.') => (location, None),
        None => ("", None),
    };
    // The JVM prints a bare file name; anything before a separator is not one (found by
    // fuzzing: `at S(/:)`), and a `Frame::file` never carries directories.
    let file = file.rsplit(['/', '\\']).next().unwrap_or(file);
    let function = normalize_function(qualified);
    let in_app = !generated && !LIBRARY_PREFIXES.iter().any(|p| qualified.starts_with(p));
    Frame {
        function,
        file: file.to_string(),
        in_app,
        line,
        raw_function: raw_function.to_string(),
        raw_path: location.to_string(),
    }
}

/// `Foo$OrderService.lambda$namesFor$0` → `Foo$OrderService.lambda$namesFor`,
/// `Foo$1.run` → `Foo.run`, `Svc$$EnhancerBySpringCGLIB$$9f1c.get` → `Svc.get`.
fn normalize_function(f: &str) -> String {
    let f = CGLIB.replace_all(f, "");
    LAMBDA_NUMBER.replace_all(&f, "").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_generated_names() {
        assert_eq!(
            normalize_function("com.acme.A$S.lambda$namesFor$0"),
            "com.acme.A$S.lambda$namesFor"
        );
        assert_eq!(normalize_function("com.acme.A$1.run"), "com.acme.A.run");
        assert_eq!(
            normalize_function("com.acme.Svc$$EnhancerBySpringCGLIB$$9f1c2d.get"),
            "com.acme.Svc.get"
        );
        assert_eq!(
            normalize_function("com.acme.Svc$$SpringCGLIB$$0.get"),
            "com.acme.Svc.get"
        );
        assert_eq!(
            normalize_function("com.acme.K.handle$lambda-0"),
            "com.acme.K.handle$lambda"
        );
        let f = frame(
            "com.acme.A$S$$Lambda$1/0x00007f32a8000400.apply",
            "Unknown Source",
        );
        assert!(!f.in_app);
        let f = frame(
            "java.base/java.util.stream.ReferencePipeline.collect",
            "ReferencePipeline.java:682",
        );
        assert!(!f.in_app);
        assert_eq!(f.file, "ReferencePipeline.java");
    }

    #[test]
    fn a_location_with_directories_keeps_only_the_file_name() {
        assert_eq!(frame("S", "/:").file, "");
        assert_eq!(frame("a.B.c", "x/y\\Foo.java:3").file, "Foo.java");
        let p = parse("at S(/:)").unwrap_or_else(|| panic!("parsed"));
        assert!(p.frames.iter().all(|f| !f.file.contains('/')));
    }
}
