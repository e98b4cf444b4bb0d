//! Stack traces as text (`exception.stacktrace`): their frames, and which of
//! them are the service's own code.
//!
//! The OpenTelemetry SDKs send a stack trace as the language prints it, so
//! frames are read line by line in each language's own format: Python
//! (`File "x.py", line 3, in f`), Java and the JVM languages
//! (`at a.b.C.m(C.java:3)`), JavaScript (`at f (/app/x.js:3:5)`), .NET
//! (`at A.B.M() in /src/X.cs:line 3`), Ruby (`x.rb:3:in 'f'`), PHP
//! (`#0 /app/x.php(3): f()`), Go (a function line, then a tab and
//! `file.go:3`) and Rust (`0: crate::f`, then `at src/x.rs:3:5`).
//!
//! A frame is **in-app** unless its file lies among installed packages or
//! the language's runtime (`site-packages/`, `node_modules/`, `/lib/python3`,
//! Go's module cache, Cargo's registry, `node:` and `<frozen …>` modules, …)
//! or its function is in a runtime or well-known library namespace (`java.`,
//! `org.springframework.`, `System.`, `std::`, `tokio::`, …). Grouping reads
//! the in-app frames ([`in_app_frames`]), as Sentry does: the file's name
//! and the function, not the line, so a deploy that moves code keeps its
//! groups.

use std::sync::LazyLock;

use regex::Regex;

use super::fingerprint::normalise_words;

/// Bytes of a stack trace read; the rest is ignored.
pub(crate) const MAX_INPUT_BYTES: usize = 64 << 10;
/// In-app frames kept for grouping.
pub(crate) const MAX_FRAMES: usize = 64;

/// One frame, as printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    /// The file's path as printed (may be empty).
    pub(crate) file: &'a str,
    /// The function, method or closure (may be empty).
    pub(crate) function: &'a str,
    /// The line, when printed.
    pub(crate) line: Option<u32>,
    /// The format it was printed in.
    pub(crate) language: Language,
}

/// The formats frames are read in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Language {
    /// `File "x.py", line 3, in f`: the innermost call printed last.
    Python,
    /// `at a.b.C.m(C.java:3)`, also what .NET prints without files.
    Jvm,
    /// `at f (/app/x.js:3:5)`.
    JavaScript,
    /// `at A.B.M() in /src/X.cs:line 3`.
    DotNet,
    /// `x.rb:3:in 'f'`.
    Ruby,
    /// `#0 /app/x.php(3): f()`.
    Php,
    /// A function line, then a tab and `file.go:3 +0x1d`.
    Go,
    /// `0: crate::f`, then `at src/x.rs:3:5`.
    Rust,
}

impl Frame<'_> {
    /// The function without what is not its name: the JVM's module or class
    /// loader (`java.base/`, `app//`).
    pub(crate) fn function(&self) -> &str {
        match self.language {
            Language::Jvm => self.function.rsplit_once('/').map_or(self.function, |(_, f)| f),
            _ => self.function,
        }
    }

    /// Whether the frame is the service's own code.
    pub(crate) fn in_app(&self) -> bool {
        let file = self.file.replace('\\', "/");
        let function = self.function().trim_start_matches('<');
        (!file.is_empty() || !function.is_empty())
            && !file.starts_with('<')
            && !file.starts_with("internal/")
            && !LIBRARY_PATHS.iter().any(|p| file.contains(p))
            && !LIBRARY_FUNCTIONS.iter().any(|p| function.starts_with(p))
    }
}

/// Parts of a path that mark installed packages or a runtime.
const LIBRARY_PATHS: &[&str] = &[
    "site-packages/",
    "dist-packages/",
    "/lib/python",
    "node_modules/",
    "node:",
    "/go/pkg/mod/",
    "/usr/local/go/src/",
    "/usr/lib/",
    "/usr/local/lib/",
    "/vendor/",
    "/.cargo/registry/",
    "/.cargo/git/",
    "/rustc/",
    "/gems/",
    "/.rbenv/",
    "/.rvm/",
    "/ruby/lib/",
];

/// Function prefixes of runtimes and well-known libraries.
const LIBRARY_FUNCTIONS: &[&str] = &[
    // JVM
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
    "org.springframework.",
    "org.apache.",
    "org.eclipse.",
    "org.hibernate.",
    "org.glassfish.",
    "org.junit.",
    "org.slf4j.",
    "ch.qos.logback.",
    "io.netty.",
    "io.grpc.",
    "io.opentelemetry.",
    "io.micrometer.",
    "io.undertow.",
    "io.vertx.",
    "io.reactivex.",
    "reactor.",
    "com.fasterxml.",
    "com.google.",
    "com.zaxxer.",
    "okhttp3.",
    "okio.",
    "feign.",
    "net.bytebuddy.",
    // .NET
    "System.",
    "Microsoft.",
    // Rust
    "std::",
    "core::",
    "alloc::",
    "tokio::",
    "futures::",
    "futures_util::",
    "hyper::",
    "tower::",
    "axum::",
    "backtrace::",
    "rust_begin_unwind",
    "__rust",
    "__libc_start",
    "_start",
    // Go
    "runtime.",
    "net/http.",
    "testing.",
];

static PYTHON: LazyLock<Regex> = LazyLock::new(|| {
    compile(r#"^[ \t]*File "(?P<file>[^"]+)", line (?P<line>[0-9]+)(?:, in (?P<function>.+?))?[ \t]*$"#)
});
static JAVA: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"^[ \t]*at (?P<function>[^ \t(]+)\((?P<file>[^ \t():]*|Native Method|Unknown Source)(?::(?P<line>[0-9]+))?\)[ \t]*$",
    )
});
static JAVASCRIPT: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"^[ \t]*at (?:async )?(?:(?P<function>[^ \t(][^(]*?) \()?(?P<file>[^() \t][^()]*?):(?P<line>[0-9]+):[0-9]+\)?[ \t]*$",
    )
});
static DOTNET: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"^[ \t]*at (?P<function>[^ \t(]+)\([^)]*\)(?: in (?P<file>.+):line (?P<line>[0-9]+))?[ \t]*$")
});
static RUBY: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"^[ \t]*(?:from )?(?P<file>[^ \t:][^:]*\.rb):(?P<line>[0-9]+):in [`'](?:[^'`]*[#.])?(?P<function>[^'`]+)'")
});
static PHP: LazyLock<Regex> =
    LazyLock::new(|| compile(r"^#[0-9]+ (?P<file>[^(]+)\((?P<line>[0-9]+)\): (?P<function>[^(]+)\("));
static GO_FILE: LazyLock<Regex> =
    LazyLock::new(|| compile(r"^\t(?P<file>[^ \t]+\.go):(?P<line>[0-9]+)(?: \+0x[0-9a-f]+)?[ \t]*$"));
static RUST_FUNCTION: LazyLock<Regex> = LazyLock::new(|| compile(r"^[ \t]*[0-9]+: (?P<function>[^ \t].*?)[ \t]*$"));
static RUST_FILE: LazyLock<Regex> =
    LazyLock::new(|| compile(r"^[ \t]+at (?P<file>.+?):(?P<line>[0-9]+)(?::[0-9]+)?[ \t]*$"));

fn compile(pattern: &str) -> Regex {
    // The patterns are constants, compiled (and so checked) by every test.
    Regex::new(pattern).expect("stack frame patterns are valid")
}

/// The frames of `stacktrace`, in the order printed (the first
/// [`MAX_INPUT_BYTES`] only).
pub(crate) fn frames(stacktrace: &str) -> Vec<Frame<'_>> {
    let mut end = stacktrace.len().min(MAX_INPUT_BYTES);
    while !stacktrace.is_char_boundary(end) {
        end -= 1;
    }
    let lines: Vec<&str> = stacktrace[..end].lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        if let Some(caps) = PYTHON.captures(line) {
            out.push(frame(caps, Language::Python));
        } else if let Some(caps) = JAVA.captures(line) {
            out.push(frame(caps, Language::Jvm));
        } else if let Some(caps) = GO_FILE.captures(line) {
            // The function is the line before: `pkg.(*T).M(0x1, ...)`.
            let mut found = frame(caps, Language::Go);
            if let Some(previous) = i.checked_sub(2).map(|p| lines[p]) {
                found.function = previous.rfind('(').map_or(previous, |at| &previous[..at]).trim();
            }
            out.push(found);
        } else if let Some(caps) = RUST_FUNCTION.captures(line) {
            let mut found = frame(caps, Language::Rust);
            found.function = strip_rust_hash(found.function);
            if let Some(at) = lines.get(i).and_then(|next| RUST_FILE.captures(next)) {
                found.file = at.name("file").map_or("", |m| m.as_str());
                found.line = at.name("line").and_then(|m| m.as_str().parse().ok());
                i += 1;
            }
            out.push(found);
        } else if let Some(caps) = JAVASCRIPT.captures(line) {
            out.push(frame(caps, Language::JavaScript));
        } else if let Some(caps) = DOTNET.captures(line) {
            out.push(frame(caps, Language::DotNet));
        } else if let Some(caps) = RUBY.captures(line) {
            out.push(frame(caps, Language::Ruby));
        } else if let Some(caps) = PHP.captures(line) {
            out.push(frame(caps, Language::Php));
        }
    }
    out
}

/// The frame `caps` read, printed in `language`.
fn frame<'a>(caps: regex::Captures<'a>, language: Language) -> Frame<'a> {
    let text = |name: &str| caps.name(name).map_or("", |m| m.as_str().trim());
    Frame {
        file: text("file"),
        function: text("function"),
        line: caps.name("line").and_then(|m| m.as_str().parse().ok()),
        language,
    }
}

/// `crate::f::h0123456789abcdef` → `crate::f`: the hash changes with every build.
fn strip_rust_hash(function: &str) -> &str {
    match function.rsplit_once("::h") {
        Some((path, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => path,
        _ => function,
    }
}

/// The in-app frames of `stacktrace` as grouping reads them, `file|function`
/// (the file's name without its directories, both normalised as names are
/// in messages, so a hashed bundle name or a numbered lambda does not split
/// a group), in the order printed, a run of the same frame (recursion) kept
/// once, at most [`MAX_FRAMES`]. Empty when it has none.
pub(crate) fn in_app_frames(stacktrace: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for frame in frames(stacktrace).iter().filter(|f| f.in_app()) {
        let path = frame.file.replace('\\', "/");
        let file = path.rsplit('/').next().unwrap_or_default();
        let mut key = String::with_capacity(file.len() + frame.function.len() + 1);
        normalise_words(file, &mut key);
        key.push('|');
        normalise_words(frame.function(), &mut key);
        if out.last() != Some(&key) {
            out.push(key);
        }
        if out.len() == MAX_FRAMES {
            break;
        }
    }
    out
}

/// Where the innermost in-app frame of `stacktrace` is, as `file:line`
/// (the file as printed), when it has one.
pub(crate) fn innermost_in_app(stacktrace: &str) -> Option<String> {
    let frames = frames(stacktrace);
    let mut in_app = frames.iter().filter(|f| f.in_app() && !f.file.is_empty());
    let innermost = if frames.first().is_some_and(|f| f.language == Language::Python) {
        in_app.next_back()
    } else {
        in_app.next()
    }?;
    Some(match innermost.line {
        Some(line) => format!("{}:{line}", innermost.file),
        None => innermost.file.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PYTHON_TRACE: &str = r#"Traceback (most recent call last):
  File "/usr/local/lib/python3.12/site-packages/flask/app.py", line 880, in full_dispatch_request
    rv = self.dispatch_request()
  File "/app/shop/views.py", line 42, in checkout
    total = price(order)
  File "/app/shop/pricing.py", line 7, in price
    return order["amount"] * rate()
  File "/usr/local/lib/python3.12/json/__init__.py", line 346, in loads
    return _default_decoder.decode(s)
KeyError: 'amount'"#;

    const JAVA_TRACE: &str = "java.lang.IllegalStateException: order 42 missing
\tat com.example.shop.OrderService.find(OrderService.java:88)
\tat com.example.shop.OrderController.lambda$get$0(OrderController.java:31)
\tat java.base/java.util.Optional.orElseThrow(Optional.java:403)
\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:897)
\tat app//com.example.shop.Filter.doFilter(Filter.java:12)
\tat java.base/java.lang.Thread.run(Native Method)
Caused by: java.sql.SQLException: closed
\tat com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:181)
\t... 23 more";

    const NODE_TRACE: &str = "TypeError: Cannot read properties of undefined (reading 'id')
    at getUser (/app/src/users.js:14:22)
    at async Promise.all (index 0)
    at /app/src/routes.js:30:5
    at Layer.handle [as handle_request] (/app/node_modules/express/lib/router/layer.js:95:5)
    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)";

    const GO_TRACE: &str = "panic: runtime error: index out of range [3] with length 3

goroutine 1 [running]:
main.(*Server).handle(0xc000010000, {0x0, 0x0})
\t/app/server.go:42 +0x1d
github.com/gin-gonic/gin.(*Context).Next(...)
\t/root/go/pkg/mod/github.com/gin-gonic/gin@v1.9.1/context.go:174
main.main()
\t/app/main.go:12 +0x25";

    const RUST_TRACE: &str = "   0: std::backtrace_rs::backtrace::libunwind::trace
             at /rustc/abc/library/std/src/../../backtrace/src/backtrace/libunwind.rs:116:5
   1: shop::orders::find::h0123456789abcdef
             at ./src/orders.rs:88:13
   2: shop::main
             at ./src/main.rs:5:5
   3: core::ops::function::FnOnce::call_once";

    const DOTNET_TRACE: &str = "System.InvalidOperationException: Sequence contains no elements
   at System.Linq.ThrowHelper.ThrowNoElementsException()
   at Shop.Orders.OrderService.Find(Int32 id) in /src/Shop/OrderService.cs:line 88
   at Shop.Api.OrdersController.Get(Int32 id) in /src/Shop.Api/OrdersController.cs:line 31";

    const RUBY_TRACE: &str = "/app/app/models/order.rb:12:in `find!': order missing (RuntimeError)
\tfrom /usr/local/bundle/gems/activerecord-7.1.0/lib/active_record/base.rb:10:in `find'
\tfrom /app/app/controllers/orders_controller.rb:5:in 'OrdersController#show'";

    #[test]
    fn reads_the_in_app_frames_of_each_language() {
        let cases: [(&str, &[&str]); 7] = [
            (PYTHON_TRACE, &["views.py|checkout", "pricing.py|price"]),
            (
                JAVA_TRACE,
                &[
                    "OrderService.java|com.example.shop.OrderService.find",
                    "OrderController.java|com.example.shop.OrderController.lambda$get$<num>",
                    "Filter.java|com.example.shop.Filter.doFilter",
                ],
            ),
            (NODE_TRACE, &["users.js|getUser", "routes.js|"]),
            (GO_TRACE, &["server.go|main.(*Server).handle", "main.go|main.main"]),
            (RUST_TRACE, &["orders.rs|shop::orders::find", "main.rs|shop::main"]),
            (
                DOTNET_TRACE,
                &[
                    "OrderService.cs|Shop.Orders.OrderService.Find",
                    "OrdersController.cs|Shop.Api.OrdersController.Get",
                ],
            ),
            (RUBY_TRACE, &["order.rb|find!", "orders_controller.rb|show"]),
        ];
        for (trace, expected) in cases {
            assert_eq!(in_app_frames(trace), expected, "{trace}");
        }
    }

    #[test]
    fn the_innermost_in_app_frame_is_the_location() {
        assert_eq!(
            innermost_in_app(PYTHON_TRACE).as_deref(),
            Some("/app/shop/pricing.py:7")
        );
        assert_eq!(innermost_in_app(JAVA_TRACE).as_deref(), Some("OrderService.java:88"));
        assert_eq!(innermost_in_app(GO_TRACE).as_deref(), Some("/app/server.go:42"));
        assert_eq!(innermost_in_app(RUST_TRACE).as_deref(), Some("./src/orders.rs:88"));
        assert_eq!(innermost_in_app("no frames here"), None);
    }

    #[test]
    fn lines_and_recursion_do_not_change_the_frames() {
        let moved = PYTHON_TRACE.replace("line 42", "line 57").replace("line 7,", "line 9,");
        assert_eq!(in_app_frames(&moved), in_app_frames(PYTHON_TRACE));
        let deep = |n: usize| {
            let frame = "  File \"/app/tree.py\", line 3, in walk\n    walk(node.left)\n";
            format!(
                "Traceback (most recent call last):\n{}RecursionError: too deep",
                frame.repeat(n)
            )
        };
        assert_eq!(in_app_frames(&deep(10)), in_app_frames(&deep(900)));
        assert_eq!(in_app_frames(&deep(900)), ["tree.py|walk"]);
    }

    #[test]
    fn library_only_and_hostile_traces_have_no_in_app_frames() {
        let library = "Traceback (most recent call last):\n  File \"/usr/lib/python3.11/json/decoder.py\", line 3, in decode\nValueError: x";
        assert!(in_app_frames(library).is_empty());
        assert!(in_app_frames("").is_empty());
        for pattern in ["  File \"", "\tat (", "   0: ", "\t/a.go:1\n", "at a (b:1:2)\n"] {
            let hostile = pattern.repeat(1_000_000 / pattern.len());
            assert!(in_app_frames(&hostile).len() <= MAX_FRAMES);
        }
    }
}
