//! The proxy's modules form layers: no module reaches, through `crate::`
//! paths, back to one that reaches it. A cycle is how two homes for one
//! behaviour start (the snapshot type calling into the request path, the
//! HTTP/1 parser holding the pool another module borrows), so the build
//! refuses one. docs/architecture.md draws the layers.
//!
//! Read from the sources: each top-level module (a file of `src/`, or a
//! folder with its sub-modules) and every `crate::NAME` it names outside
//! comments and its `#[cfg(test)] mod tests`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report"
)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// Modules that may see every other: the crate root (`Dataplane`, the
/// configuration) and the fuzzing entry points.
const ROOTS: [&str; 2] = ["lib", "fuzzing"];

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments and without its unit tests.
fn code(text: &str) -> String {
    let text = text
        .find("#[cfg(test)]\nmod tests")
        .map_or(text, |i| &text[..i]);
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules `code` names through `crate::`, including inside
/// `use crate::{a, b::{c}}` groups.
fn named(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let word = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut item) = (0, String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(word(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.insert(word(item.trim()));
        } else {
            out.insert(word(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel.components().next().unwrap().as_os_str();
        let module = first.to_str().unwrap().trim_end_matches(".rs").to_owned();
        if ROOTS.contains(&module.as_str()) {
            continue;
        }
        let uses = named(&code(&std::fs::read_to_string(&f).unwrap()));
        graph.entry(module).or_default().extend(uses);
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for (m, uses) in &mut graph {
        uses.retain(|u| u != m && modules.contains(u));
    }
    graph
}

/// A cycle through `graph`, if there is one (depth-first search).
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut c = path[at..].to_vec();
            c.push(m.to_owned());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_owned());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|m| visit(m, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_proxy_modules_have_no_import_cycle() {
    let graph = graph();
    assert!(graph.len() > 15, "the sources were read: {graph:?}");
    if let Some(c) = cycle(&graph) {
        panic!("import cycle: {}", c.join(" -> "));
    }
}

#[test]
fn the_reader_sees_grouped_imports_and_the_checker_finds_a_cycle() {
    let uses = named("use crate::{a::{b, c}, d, e::f};\nlet x = crate::g::h();");
    assert_eq!(
        uses.into_iter().collect::<Vec<_>>(),
        ["a", "d", "e", "g"],
        "every top-level module named"
    );
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a"][..]),
        ("d", &[][..]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
    .collect();
    assert_eq!(cycle(&g).unwrap(), ["a", "b", "c", "a"]);
}

/// The inbound side (and the allocator's trimming task, which watches the
/// whole data plane) may take `Dataplane`; every module below it takes the
/// narrow inputs it needs (a connector, a budget, the configuration), so
/// what a lower layer can reach is what its signature says.
const SEES_THE_DATA_PLANE: [&str; 6] = [
    "listener",
    "fastpath",
    "request",
    "passthrough",
    "resource",
    "memory",
];

#[test]
fn only_the_inbound_side_takes_the_whole_data_plane() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut reaching = BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let module = rel.components().next().unwrap().as_os_str();
        let module = module.to_str().unwrap().trim_end_matches(".rs");
        let code = code(&std::fs::read_to_string(f).unwrap());
        let names_it = code
            .match_indices("Dataplane")
            .any(|(i, _)| !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'));
        if names_it && !ROOTS.contains(&module) && !SEES_THE_DATA_PLANE.contains(&module) {
            reaching.insert(rel.display().to_string());
        }
    }
    assert!(files.len() > 15);
    assert!(
        reaching.is_empty(),
        "below the inbound side, modules take narrow inputs, not Dataplane: {reaching:?}"
    );
}
