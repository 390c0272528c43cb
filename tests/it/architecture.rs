//! The layering of `src/` (docs/architecture.md): the graph of top-level modules, derived from
//! the `crate::…` paths in the source, has no cycle, and every edge points down the layer list
//! that docs/architecture.md draws.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A dependency: `from` names `crate::to` at `site` (file:line).
struct Edge {
    to: String,
    site: String,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for the crate roots).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.trim_end_matches(".rs").to_string();
    (first != "lib" && first != "main").then_some(first)
}

/// Every top-level module named by a `crate::` path in `text`, with its line: `crate::a::…`,
/// `crate::{a, b::…}` (also over several lines). Comments are skipped.
fn crate_paths(text: &str) -> Vec<(String, usize)> {
    let code: String = text
        .lines()
        .map(|l| if l.trim_start().starts_with("//") { "" } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut out = Vec::new();
    for (pos, _) in code.match_indices("crate::") {
        let before = code[..pos].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[pos + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of a use group: those at brace depth 0.
            let (mut depth, mut start) = (0usize, true);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 0 => {
                        start = false;
                        let name = ident(&group[i..]);
                        if !name.is_empty() {
                            out.push((name, line_of(pos + "crate::{".len() + i)));
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.push((name, line_of(pos)));
            }
        }
    }
    out
}

/// The module graph of `src/`: module → the modules it names.
fn module_graph() -> BTreeMap<String, Vec<Edge>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(&src, f)).collect();
    let mut graph: BTreeMap<String, Vec<Edge>> = modules.iter().map(|m| (m.clone(), Vec::new())).collect();
    for file in &files {
        let Some(from) = top_module(&src, file) else { continue };
        let text = std::fs::read_to_string(file).unwrap();
        for (to, line) in crate_paths(&text) {
            if to != from && modules.contains(&to) {
                let site = format!("{}:{line}", file.strip_prefix(&src).unwrap().display());
                graph.get_mut(&from).unwrap().push(Edge { to, site });
            }
        }
    }
    graph
}

/// A cycle of `graph`, as the modules on it and the first site of each of its edges.
fn find_cycle(graph: &BTreeMap<String, Vec<Edge>>) -> Option<Vec<String>> {
    fn visit<'g>(
        node: &'g str,
        graph: &'g BTreeMap<String, Vec<Edge>>,
        done: &mut BTreeSet<&'g str>,
        stack: &mut Vec<(&'g str, &'g str)>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|(n, _)| *n == node) {
            return Some(stack[at..].iter().map(|(n, site)| format!("{n} ({site})")).chain([node.to_string()]).collect());
        }
        if !done.insert(node) {
            return None;
        }
        for edge in &graph[node] {
            stack.push((node, &edge.site));
            if let Some(cycle) = visit(&edge.to, graph, done, stack) {
                return Some(cycle);
            }
            stack.pop();
        }
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|m| visit(m, graph, &mut done, &mut Vec::new()))
}

/// The layers docs/architecture.md lists between its `layers:begin`/`layers:end` markers, lowest
/// first: `- 2 services: cluster, ratelimit` puts those modules in layer 2.
fn documented_layers() -> BTreeMap<String, usize> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))
        .expect("docs/architecture.md exists");
    let start = doc.find("<!-- layers:begin -->").expect("layers:begin marker");
    let end = doc.find("<!-- layers:end -->").expect("layers:end marker");
    let mut layers = BTreeMap::new();
    for line in doc[start..end].lines().filter_map(|l| l.trim().strip_prefix("- ")) {
        let (head, modules) = line.split_once(':').expect("`- N name: modules`");
        let rank: usize = head.split_whitespace().next().unwrap().parse().expect("a layer number");
        for m in modules.split(',').map(|m| m.trim().trim_matches('`')).filter(|m| !m.is_empty()) {
            assert!(layers.insert(m.to_string(), rank).is_none(), "{m} is in two layers");
        }
    }
    layers
}

#[test]
fn the_top_level_modules_import_no_cycle() {
    let graph = module_graph();
    assert!(graph.len() > 10, "the walk found the modules: {:?}", graph.keys());
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle between top-level modules: {}", cycle.join(" → "));
    }
}

#[test]
fn every_dependency_points_down_the_documented_layers() {
    let graph = module_graph();
    let layers = documented_layers();
    let modules: BTreeSet<&String> = graph.keys().collect();
    assert_eq!(modules, layers.keys().collect(), "docs/architecture.md lists exactly the modules of src/");
    let mut upward = Vec::new();
    for (from, edges) in &graph {
        for edge in edges {
            if layers[&edge.to] > layers[from] {
                upward.push(format!("{from} → {} ({})", edge.to, edge.site));
            }
        }
    }
    assert!(upward.is_empty(), "dependencies on a higher layer:\n{}", upward.join("\n"));
}

#[test]
fn the_path_scanner_reads_groups_and_skips_comments() {
    let text = "use crate::{a::X, b,\n    c::{d, e}};\n// crate::f\nlet x = crate::g::h();\nmy_crate::i;";
    let found: Vec<(String, usize)> = crate_paths(text);
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "g"]);
    assert_eq!(found[2].1, 2);
    let mut graph = BTreeMap::new();
    graph.insert("x".to_string(), vec![Edge { to: "y".into(), site: "x.rs:1".into() }]);
    graph.insert("y".to_string(), vec![Edge { to: "x".into(), site: "y.rs:2".into() }]);
    assert!(find_cycle(&graph).is_some());
    graph.get_mut("y").unwrap().clear();
    assert!(find_cycle(&graph).is_none());
}
