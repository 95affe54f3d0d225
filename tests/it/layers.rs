//! The layer rule of ARCHITECTURE.md, held to the code: a module names only modules of its own
//! layer or of the layers below it, and no two modules form a cycle (test code included).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, top first. A module of one layer may use its own layer and those below it.
const LAYERS: &[&[&str]] = &[
    &["commands"],
    &["ops"],
    &["pull", "mirror"],
    &["replica"],
    &["config"],
    &["decode"],
    &[
        "env", "time", "exit", "files", "owner", "mask", "logging", "progress", "sample",
    ],
];

/// Macros exported at the crate's root, and the module that defines them.
const MACROS: &[(&str, &str)] = &[
    ("say", "logging"),
    ("sayln", "logging"),
    ("say_data", "logging"),
];

/// The layer of a module path (`replica::backup` is in `replica`), top being 0.
fn layer(module: &str) -> Option<usize> {
    let first = module.split("::").next()?;
    LAYERS.iter().position(|names| names.contains(&first))
}

/// The unit a module belongs to for the cycle rule: its first two path segments
/// (`decode::payload::registration` is `decode::payload`); a folder's own module and its
/// children may refer to each other, siblings may not form a cycle.
fn unit(module: &str) -> String {
    module.split("::").take(2).collect::<Vec<_>>().join("::")
}

/// A module path from a file path under `src/`: `replica/mod.rs` is `replica`.
fn module_of(file: &str) -> String {
    let trimmed = file.trim_end_matches(".rs").trim_end_matches("/mod");
    trimmed.replace('/', "::")
}

/// The module paths a file's text names: `crate::a::b`, `super::x` (resolved against the
/// file's own module) and the crate's macros.
fn references(module: &str, text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if after.starts_with('{') {
            let group = &after[1..after.find('}').unwrap_or(after.len())];
            for name in group.split(',') {
                let name = name.trim().split("::").next().unwrap_or_default();
                if !name.is_empty() {
                    found.insert(name.to_owned());
                }
            }
        } else {
            let path: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let path = path.trim_end_matches(':').to_owned();
            if let Some(&(_, home)) = MACROS
                .iter()
                .find(|(name, _)| after[path.len()..].starts_with('!') && *name == path)
            {
                found.insert(home.to_owned());
            } else if !path.is_empty() {
                found.insert(path);
            }
        }
        rest = after;
    }
    // `super::` is the module's parent, `super::super::` its grandparent, and so on.
    let own: Vec<&str> = module.split("::").collect();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(found_at) = text[at..].find("super::") {
        let start = at + found_at;
        let joined = start > 0
            && (bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b':');
        let mut end = start;
        let mut ups = 0;
        while text[end..].starts_with("super::") {
            end += "super::".len();
            ups += 1;
        }
        at = end;
        if joined || ups > own.len() {
            continue;
        }
        let name: String = text[end..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let mut path: Vec<&str> = own[..own.len() - ups].to_vec();
        path.push(&name);
        found.insert(path.join("::"));
    }
    found
}

/// The known module a referenced path lands in: its longest prefix that is a module.
fn resolve(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let segments: Vec<&str> = path.split("::").collect();
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|prefix| modules.contains(prefix))
}

/// Every breach of the layer rule in `files` (path under `src/`, text), in words.
fn breaches(files: &[(String, String)]) -> Vec<String> {
    let modules: BTreeSet<String> = files.iter().map(|(file, _)| module_of(file)).collect();
    let mut problems = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in files {
        let module = module_of(file);
        let Some(own) = layer(&module) else {
            problems.push(format!("{file}: `{module}` is in no layer"));
            continue;
        };
        for reference in references(&module, text) {
            let Some(target) = resolve(&reference, &modules) else {
                continue;
            };
            let Some(theirs) = layer(&target) else {
                continue;
            };
            if theirs < own {
                problems.push(format!(
                    "{file}: `{module}` uses `{target}`, a layer above it"
                ));
            }
            let (from, to) = (unit(&module), unit(&target));
            let related = from.starts_with(&format!("{to}::"))
                || to.starts_with(&format!("{from}::"))
                || from == to;
            if !related {
                edges.entry(from).or_default().insert(to);
            }
        }
    }
    problems.extend(cycles(&edges));
    problems
}

/// The cycles among units, each said once.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut found = BTreeSet::new();
    for start in edges.keys() {
        // Depth-first from `start`, looking for a way back to it.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if next == start {
                    let mut cycle = path.clone();
                    // The same cycle from any of its nodes: said from the smallest.
                    let smallest = cycle
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, name)| name.as_str())
                        .map_or(0, |(at, _)| at);
                    cycle.rotate_left(smallest);
                    cycle.push(cycle[0].clone());
                    found.insert(format!("cycle: {}", cycle.join(" -> ")));
                } else if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    found.into_iter().collect()
}

/// Every `.rs` file under `src/` but the binary's `main.rs` and the crate root.
fn source_files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                let relative = path
                    .strip_prefix(&root)
                    .expect("under src")
                    .to_string_lossy()
                    .into_owned();
                if relative != "main.rs" && relative != "lib.rs" {
                    let text = std::fs::read_to_string(&path).expect("read");
                    files.push((relative, text));
                }
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_module_uses_only_its_own_layer_and_those_below_without_cycles() {
    let files = source_files();
    assert!(files.len() > 20, "found only {} files", files.len());
    let problems = breaches(&files);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_layer_rule_sees_an_upward_use_and_a_cycle() {
    let file = |path: &str, text: &str| (path.to_owned(), text.to_owned());
    let clean = [
        file(
            "replica/mod.rs",
            "use crate::decode::message::Message;\nmod write;",
        ),
        file("replica/write.rs", "use super::Store; use crate::time;"),
        file(
            "decode/message.rs",
            "use crate::decode::envelope::Envelope;",
        ),
        file("decode/envelope.rs", "fn f() { crate::sayln!(\"x\"); }"),
        file("time.rs", ""),
        file("logging.rs", ""),
    ];
    assert_eq!(breaches(&clean), Vec::<String>::new());

    let mut upward = clean.to_vec();
    upward.push(file("pull/feed.rs", "use crate::ops::notify;"));
    upward.push(file("ops/notify.rs", ""));
    assert_eq!(
        breaches(&upward),
        ["pull/feed.rs: `pull::feed` uses `ops::notify`, a layer above it"]
    );

    let mut cycle = clean.to_vec();
    cycle[3] = file("decode/envelope.rs", "use crate::decode::message::field;");
    assert_eq!(
        breaches(&cycle),
        ["cycle: decode::envelope -> decode::message -> decode::envelope"]
    );

    // A test module's use counts too, and `super::` is resolved.
    let mut in_tests = clean.to_vec();
    in_tests.push(file(
        "decode/payload/mod.rs",
        "#[cfg(test)] mod tests { use crate::replica::Store; }",
    ));
    in_tests.push(file(
        "decode/payload/status.rs",
        "use super::super::message;",
    ));
    assert_eq!(
        breaches(&in_tests),
        ["decode/payload/mod.rs: `decode::payload` uses `replica`, a layer above it"]
    );
}
