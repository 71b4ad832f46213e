//! The crate's shape, checked on its sources: the top-level modules are layers, each using only
//! the ones before it (`format`, `stats`, `compare`, `chunk`, `chunked`, `estimate`, `realized`,
//! `summarised`, `table`, `report`, `job`); no two files use
//! each other, directly or through others (no import cycles); numbers are formatted in
//! `format` alone; and library messages name no command-line flag (the CLI adds those).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first.
const LAYERS: [&str; 11] =
    ["format", "stats", "compare", "chunk", "chunked", "estimate", "realized", "summarised", "table", "report", "job"];

/// A module path, e.g. `["job", "run"]`; the crate root is empty.
type Module = Vec<String>;

/// Every source file's code as a module path and its lines, without comments and tests.
fn sources() -> BTreeMap<Module, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let relative = path.strip_prefix(&root).unwrap().with_extension("");
            let mut module: Module = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if module.last().is_some_and(|m| m == "mod" || m == "lib") {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code: Vec<&str> = text
                .lines()
                .take_while(|l| l.trim() != "#[cfg(test)]")
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            out.insert(module, code.join("\n"));
        }
    }
    out
}

/// The paths a file names: `crate::a::b…` and `super::a…`, as module paths.
fn named_paths(module: &Module, code: &str) -> Vec<Module> {
    let ident = |s: &str| -> Vec<String> {
        let mut parts = Vec::new();
        let mut rest = s;
        loop {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            if end == 0 {
                break;
            }
            parts.push(rest[..end].to_string());
            match rest[end..].strip_prefix("::") {
                Some(next) if next.starts_with(|c: char| c.is_ascii_alphabetic()) => rest = next,
                _ => break,
            }
        }
        parts
    };
    let mut out = Vec::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", module[..module.len().saturating_sub(1)].to_vec())] {
        for (at, _) in code.match_indices(prefix) {
            let rest = &code[at + prefix.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                for item in group.split(',') {
                    let mut path = base.clone();
                    path.extend(ident(item.trim()));
                    out.push(path);
                }
            } else {
                let mut path = base.clone();
                path.extend(ident(rest));
                out.push(path);
            }
        }
    }
    out
}

/// The file module a path names: its longest prefix that is a file.
fn file_of(path: &Module, files: &BTreeSet<Module>) -> Option<Module> {
    (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| files.contains(p))
}

#[test]
fn modules_are_layers_without_cycles() {
    let sources = sources();
    let files: BTreeSet<Module> = sources.keys().cloned().collect();
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for top in sources.keys().filter_map(|m| m.first()) {
        assert!(LAYERS.contains(&top.as_str()), "`{top}` is not one of the layers {LAYERS:?}");
    }
    let mut upward = Vec::new();
    for (module, code) in &sources {
        for path in named_paths(module, code) {
            let Some(target) = file_of(&path, &files) else { continue };
            if target == *module {
                continue;
            }
            if let (Some(from), Some(to)) = (module.first(), target.first()) {
                let rank = |m: &String| LAYERS.iter().position(|l| l == m).unwrap();
                if rank(to) > rank(from) {
                    upward.push(format!("{} uses {}", module.join("::"), target.join("::")));
                }
            }
            edges.entry(module.clone()).or_default().insert(target);
        }
    }
    assert!(upward.is_empty(), "a layer uses a later one:\n{}", upward.join("\n"));
    assert!(edges.values().flatten().count() > 20, "the scan found the crate's imports: {edges:?}");

    // Depth-first search for a cycle among the files.
    fn visit(
        m: &Module,
        edges: &BTreeMap<Module, BTreeSet<Module>>,
        state: &mut BTreeMap<Module, bool>,
        stack: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        match state.get(m) {
            Some(true) => return None,
            Some(false) => {
                let start = stack.iter().position(|s| s == m).unwrap();
                return Some(stack[start..].to_vec());
            }
            None => {}
        }
        state.insert(m.clone(), false);
        stack.push(m.clone());
        for next in edges.get(m).into_iter().flatten() {
            if next.is_empty() {
                continue; // the crate root: its Error is shared by all
            }
            if let Some(cycle) = visit(next, edges, state, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        state.insert(m.clone(), true);
        None
    }
    let mut state = BTreeMap::new();
    for m in edges.keys() {
        if let Some(cycle) = visit(m, &edges, &mut state, &mut Vec::new()) {
            let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            panic!("import cycle: {} -> {}", names.join(" -> "), names[0]);
        }
    }
}

#[test]
fn numbers_are_formatted_in_one_module() {
    let formatters = ["fn number(", "fn significant(", "fn format_number(", "fn short(", "fn time(", ":.3e}"];
    for (module, code) in sources() {
        if module == ["format"] {
            continue;
        }
        for f in formatters {
            assert!(!code.contains(f), "{} formats numbers itself (`{f}`); use crate::format", module.join("::"));
        }
    }
}

#[test]
fn library_messages_name_no_command_line_flags() {
    for (module, code) in sources() {
        for line in code.lines() {
            let flag =
                line.match_indices("--").any(|(i, _)| line[i + 2..].starts_with(|c: char| c.is_ascii_lowercase()));
            assert!(!flag, "{}: `{}` names a command-line flag; the CLI adds those", module.join("::"), line.trim());
        }
    }
}
