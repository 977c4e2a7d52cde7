//! The core's modules form no import cycle: each stage of a connection imports only the
//! stages below it. Read from the source itself (no tool to install): every `crate::…`,
//! `super::…` and `self::…` path outside comments and test modules is an edge from the
//! module whose file holds it to the deepest module the path names. A cycle fails the test
//! with its modules listed; `GUARDNEST_PRINT_MODULE_GRAPH=1` prints the whole graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn no_module_imports_form_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    assert!(graph.len() > 10, "modules not found under {}", src.display());
    if std::env::var_os("GUARDNEST_PRINT_MODULE_GRAPH").is_some() {
        for (from, to) in &graph {
            println!("{from} -> {}", to.iter().cloned().collect::<Vec<_>>().join(", "));
        }
    }
    let cycles = cycles(&graph);
    assert!(cycles.is_empty(), "{} module cycle(s):\n{}", cycles.len(), cycles.join("\n"));
}

/// The checker itself finds a cycle, and resolves `super::` and groups.
#[test]
fn the_checker_sees_cycles_and_nested_paths() {
    let modules: BTreeSet<String> = ["a", "a::b", "c", "d"].iter().map(ToString::to_string).collect();
    let refs = references("use crate::{c::{X, Y}, d};\n// crate::a\nfn f() { super::b::g(); \"crate::a\"; }", "a::b");
    let child = references("pub use b::X;\nuse std::fmt;", "a");
    let edges: BTreeSet<String> = refs.iter().filter_map(|r| resolve(r, &modules)).collect();
    assert_eq!(edges, ["c", "d", "a::b"].iter().map(ToString::to_string).collect());
    let edges: BTreeSet<String> = child.iter().filter_map(|r| resolve(r, &modules)).collect();
    assert_eq!(edges, ["a", "a::b"].iter().map(ToString::to_string).collect(), "a child, and std (no module)");
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("d".into());
    g.entry("d".into()).or_default().insert("a".into());
    assert_eq!(cycles(&g), vec!["a -> c -> d -> a".to_string()]);
}

/// Module path of every `.rs` file under `src`, and the edges its code names.
fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    walk(src, &mut files);
    let module_of = |file: &Path| -> String {
        let rel = file.strip_prefix(src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if parts.last().is_some_and(|l| l == "mod" || l == "lib" || l == "main") {
            parts.pop();
        }
        parts.join("::")
    };
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).filter(|m| !m.is_empty()).collect();
    let mut graph = Graph::new();
    for file in &files {
        let module = module_of(file);
        if module.is_empty() {
            continue; // lib.rs declares the modules and re-exports; it is the top, not a stage
        }
        let text = std::fs::read_to_string(file).unwrap();
        let entry = graph.entry(module.clone()).or_default();
        for path in references(&text, &module) {
            if let Some(to) = resolve(&path, &modules) {
                if to != module {
                    entry.insert(to);
                }
            }
        }
    }
    graph
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The deepest module `path` (segments from the crate root) names, if any.
fn resolve(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|m| modules.contains(m))
}

/// Every path from the crate root that the code of `module` names, expanded from groups,
/// with comments, strings and a trailing `#[cfg(test)]` module left out.
fn references(text: &str, module: &str) -> Vec<Vec<String>> {
    let code = strip(text);
    let here: Vec<String> = module.split("::").filter(|s| !s.is_empty()).map(String::from).collect();
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let word_start = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_' || chars[i - 1] == ':');
        if word_start && chars[i..].starts_with(&['u', 's', 'e', ' ']) {
            // `use child::…` (a path relative to this module) names a child module.
            let mut at = i + 4;
            skip_space(&chars, &mut at);
            let relative = ["crate::", "super::", "self::", "::"]
                .iter()
                .all(|p| !chars[at..].starts_with(&p.chars().collect::<Vec<_>>()));
            if relative {
                tree(&chars, &mut at, here.clone(), &mut out);
                i = at;
                continue;
            }
        }
        if word_start {
            for (prefix, base) in [
                ("crate::", Vec::new()),
                ("super::", here[..here.len().saturating_sub(1)].to_vec()),
                ("self::", here.clone()),
            ] {
                let p: Vec<char> = prefix.chars().collect();
                if chars[i..].starts_with(&p) {
                    let mut at = i + p.len();
                    let mut base = base;
                    // `super::super::`
                    while chars[at..].starts_with(&p) && prefix == "super::" {
                        base.pop();
                        at += p.len();
                    }
                    tree(&chars, &mut at, base, &mut out);
                    i = at;
                    break;
                }
            }
        }
        i += 1;
    }
    out
}

/// Reads `a::b`, `a::{b, c::d}` or `{…}` at `at`, adding each full path to `out`.
fn tree(chars: &[char], at: &mut usize, mut base: Vec<String>, out: &mut Vec<Vec<String>>) {
    loop {
        skip_space(chars, at);
        if chars.get(*at) == Some(&'{') {
            *at += 1;
            loop {
                skip_space(chars, at);
                match chars.get(*at) {
                    Some('}') => {
                        *at += 1;
                        return;
                    }
                    Some(',') => *at += 1,
                    None => return,
                    _ => {
                        let before = *at;
                        tree(chars, at, base.clone(), out);
                        if *at == before {
                            *at += 1;
                        }
                    }
                }
            }
        }
        let start = *at;
        while chars.get(*at).is_some_and(|c| c.is_alphanumeric() || *c == '_') {
            *at += 1;
        }
        if *at == start {
            out.push(base);
            return;
        }
        base.push(chars[start..*at].iter().collect());
        if chars[*at..].starts_with(&[':', ':']) {
            *at += 2;
            continue;
        }
        out.push(base);
        return;
    }
}

fn skip_space(chars: &[char], at: &mut usize) {
    while chars.get(*at).is_some_and(|c| c.is_whitespace()) {
        *at += 1;
    }
}

/// The code without comments, string literals and the `#[cfg(test)]` module at the end.
fn strip(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(end) => &text[..end],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if !escaped && c == '"' {
                        break;
                    }
                    escaped = !escaped && c == '\\';
                }
                out.push_str("\"\"");
            }
            // A char literal (not a lifetime): skip it so '"' opens no string.
            '\'' => {
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with('\\') {
                    for c in chars.by_ref() {
                        if c == '\'' {
                            break;
                        }
                    }
                } else if rest.chars().nth(1) == Some('\'') {
                    chars.next();
                    chars.next();
                } else {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// One line per cycle found (each strongly connected set of modules, shown as a loop
/// through it).
fn cycles(graph: &Graph) -> Vec<String> {
    let mut out = Vec::new();
    for component in strongly_connected(graph) {
        let set: BTreeSet<&String> = component.iter().collect();
        if component.len() == 1 && !graph.get(&component[0]).is_some_and(|t| t.contains(&component[0])) {
            continue;
        }
        // A loop from the smallest member back to itself, through the component.
        let start = set.iter().next().map(|s| (*s).clone()).unwrap_or_default();
        let mut path = vec![start.clone()];
        let mut seen = BTreeSet::new();
        if find_loop(graph, &set, &start, &start, &mut path, &mut seen) {
            let members: Vec<&str> = set.iter().map(|s| s.as_str()).collect();
            let mut line = path.join(" -> ");
            if members.len() > path.len() - 1 {
                line.push_str(&format!("   (all of: {})", members.join(", ")));
            }
            out.push(line);
        }
    }
    out
}

fn find_loop(
    graph: &Graph,
    set: &BTreeSet<&String>,
    start: &str,
    at: &str,
    path: &mut Vec<String>,
    seen: &mut BTreeSet<String>,
) -> bool {
    for next in graph.get(at).into_iter().flatten() {
        if !set.contains(next) {
            continue;
        }
        if next == start {
            path.push(next.clone());
            return true;
        }
        if seen.insert(next.clone()) {
            path.push(next.clone());
            if find_loop(graph, set, start, next, path, seen) {
                return true;
            }
            path.pop();
        }
    }
    false
}

/// Tarjan's algorithm, iterative over a small graph.
fn strongly_connected(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(lw));
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            component.sort();
            s.out.push(component);
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// The documentation names only what exists: every module path (`conn::serve`,
/// `crate::service::repair`, `sysproxy::process::ProcessId`) written in README.md and docs/
/// names a module of the core or of the OS layer, and an item it names is defined there;
/// every repository file path written there exists. Paths of other crates (`tokio::…`,
/// `hyper::…`) are not checked.
#[test]
fn docs_name_only_what_exists() {
    let core = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = core.parent().and_then(Path::parent).unwrap();
    let sources = [("", core.join("src")), ("sysproxy", root.join("crates/guardnest-sysproxy/src"))];
    // Module path -> the text of its file.
    let mut modules: BTreeMap<String, String> = BTreeMap::new();
    for (prefix, src) in &sources {
        let mut files = Vec::new();
        walk(src, &mut files);
        for file in files {
            let rel = file.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|l| l == "mod" || l == "lib" || l == "main") {
                parts.pop();
            }
            let path: Vec<String> = (!prefix.is_empty()).then(|| prefix.to_string()).into_iter().chain(parts).collect();
            modules.insert(path.join("::"), std::fs::read_to_string(&file).unwrap());
        }
    }
    let tops: BTreeSet<String> =
        modules.keys().filter_map(|m| m.split("::").next().filter(|s| !s.is_empty())).map(String::from).collect();
    let mut docs = vec![root.join("README.md")];
    let mut more = Vec::new();
    walk_md(&root.join("docs"), &mut more);
    docs.extend(more);
    let mut stale = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        let name = doc.strip_prefix(root).unwrap().display().to_string();
        for token in code_spans(&text) {
            for path in file_paths(&token) {
                if !root.join(&path).exists() {
                    stale.push(format!("{name}: the file {path} does not exist"));
                }
            }
            let Some(path) = module_path(&token) else { continue };
            let path: Vec<&str> = path.split("::").skip_while(|s| *s == "crate" || *s == "guardnest_core").collect();
            if path.is_empty() || EXTERNAL.contains(&path[0]) || path[0].starts_with(char::is_uppercase) {
                continue;
            }
            if !tops.contains(path[0]) {
                stale.push(format!("{name}: `{token}` names no module of GuardNest"));
                continue;
            }
            // The longest prefix that is a module; what follows is an item (and a method).
            let Some(n) = (1..=path.len()).rev().find(|n| modules.contains_key(&path[..*n].join("::"))) else {
                stale.push(format!("{name}: `{token}` names no module"));
                continue;
            };
            let module = &modules[&path[..n].join("::")];
            for item in path[n..].iter().take(2) {
                if !defines(module, item) {
                    stale.push(format!("{name}: `{token}`: {} defines no {item}", path[..n].join("::")));
                }
            }
        }
    }
    assert!(stale.is_empty(), "{} stale name(s) in the docs:\n{}", stale.len(), stale.join("\n"));
}

/// First segments of paths into other crates, which the docs may name freely.
const EXTERNAL: &[&str] = &[
    "std",
    "core",
    "alloc",
    "clippy",
    "tokio",
    "tokio_util",
    "hyper",
    "hyper_util",
    "http",
    "http_body_util",
    "httparse",
    "bytes",
    "serde",
    "serde_json",
    "reqwest",
    "rustls",
    "tauri",
    "tauri_build",
    "tauri_plugin_autostart",
    "windows_sys",
    "windows",
    "zbus",
    "clap",
    "tracing",
    "tracing_subscriber",
    "arc_swap",
    "socket2",
    "libc",
    "argon2",
    "blake2",
    "ipnet",
    "governor",
    "ppp",
    "idna",
    "flate2",
    "crc32fast",
    "foldhash",
    "humantime",
    "anyhow",
    "thiserror",
    "auto_launch",
    "guardnest_app",
    "guardnest_cli",
    "guardnest_bench",
    "guardnest_testkit",
    "guardnest_sysproxy",
    "xtask",
    "fantoccini",
    "webview2_com",
    "wry",
    "gi",
    "GLib",
    "Gio",
    "netlink_packet_route",
    "netlink_sys",
    "rtnetlink",
    "procfs",
    "parking_lot",
    "boa_engine",
    "rquickjs",
    "sha2",
    "hmac",
    "getrandom",
];

fn walk_md(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk_md(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

/// The text of every `code span` (and, so that links count too, every markdown link target).
fn code_spans(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        while let (Some(code), Some(_)) = (parts.next(), parts.next()) {
            out.push(code.to_string());
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                out.push(rest[..end].to_string());
            }
        }
    }
    out
}

/// A Rust path such as `conn::serve` or `crate::service::ProxyService::enable`.
fn module_path(token: &str) -> Option<String> {
    let token = token.trim().trim_end_matches("()");
    let ok = token.contains("::")
        && token.split("::").all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    ok.then(|| token.to_string())
}

/// Repository file paths in a token (`crates/guardnest-core/src/control.rs`, `.ci/run`).
fn file_paths(token: &str) -> Vec<String> {
    let roots = ["crates/", "app/", "bench/", "xtask/", "docs/", "fuzz/", ".ci/", "packaging/", "examples/"];
    token
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .map(|w| w.trim_start_matches("../").trim_end_matches([':', '.', ';']))
        .filter(|w| roots.iter().any(|r| w.starts_with(r)) && !w.contains(['*', '<', '{', '$']))
        .map(|w| w.split('#').next().unwrap_or(w))
        // `tests/cli.rs::a_test` names a test in a file.
        .map(|w| w.split_once(".rs::").map_or(w.to_string(), |(file, _)| format!("{file}.rs")))
        .collect()
}

/// Whether a module's text defines `item` (a function, type, constant, module, variant or
/// field name as written in its declarations).
fn defines(module: &str, item: &str) -> bool {
    let kinds = ["fn ", "struct ", "enum ", "const ", "type ", "trait ", "mod ", "static ", "macro_rules! "];
    kinds.iter().any(|k| module.contains(&format!("{k}{item}")))
        || module.contains(&format!("    {item}(")) // an enum variant with data
        || module.contains(&format!("    {item} {{"))
        || module.contains(&format!("    {item},"))
        || module.contains(&format!("pub use {item}"))
        || module.contains(&format!("::{item};"))
        || module.contains(&format!("::{item},"))
        || module.contains(&format!(" {item}}}"))
}
