//! Tidy: the rules of ARCHITECTURE.md a machine can check, checked on every `cargo test`.
//!
//! - every workspace crate has a row in the code map, and its `[dependencies]` on other
//!   workspace crates are named in that row's "may depend on" column (dev-dependencies are free:
//!   tests may use any crate);
//! - SQL on `events` is written only in `eventlog`, SQL on `users` only in `accounts`; tests
//!   (files under `tests/`, `testing.rs` modules, code after `#[cfg(test)]`) may read and tamper;
//! - test support (`pub mod testing`) is compiled only for tests or with the `testing` feature,
//!   which only dev-dependencies enable.
//!
//! The manifests and the table are read with a few lines of parsing, not a TOML library: the
//! repository's own style (one `name = ...` or `name.workspace = true` per line) is all there is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The workspace members (folder = crate name), from the root manifest.
fn members() -> Vec<String> {
    let manifest = read(&root().join("Cargo.toml"));
    let list = manifest
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .expect("a members list in the root Cargo.toml")
        .0;
    list.split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .collect()
}

/// One dependency line of a manifest.
#[derive(Debug)]
struct Dependency {
    name: String,
    /// `dependencies`, `dev-dependencies` or `build-dependencies`.
    section: String,
    /// The features the line enables.
    features: Vec<String>,
}

/// The dependencies a manifest declares, section by section.
fn dependencies(manifest: &str) -> Vec<Dependency> {
    let mut found = Vec::new();
    let mut section = String::new();
    for line in manifest.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            // `[dependencies]`, `[target.'cfg(..)'.dev-dependencies]`, `[dependencies.name]`
            let kinds = ["build-dependencies", "dev-dependencies", "dependencies"];
            section = String::new();
            for kind in kinds {
                if let Some(at) = header.find(kind) {
                    section = kind.to_owned();
                    if let Some(name) = header[at + kind.len()..].strip_prefix('.') {
                        found.push(Dependency {
                            name: name.to_owned(),
                            section: kind.to_owned(),
                            features: Vec::new(),
                        });
                    }
                    break;
                }
            }
            continue;
        }
        if section.is_empty() || line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let name = key.trim().split('.').next().unwrap_or_default().to_owned();
        let features = value
            .split_once("features")
            .and_then(|(_, rest)| rest.split_once('['))
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(list, _)| {
                list.split(',')
                    .map(|f| f.trim().trim_matches('"').to_owned())
                    .filter(|f| !f.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        found.push(Dependency {
            name,
            section: section.clone(),
            features,
        });
    }
    found
}

/// The code map's "may depend on" column per crate folder: the workspace crates each row names
/// (a clause about dev-dependencies does not count: they are not checked).
fn may_depend_on(members: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let architecture = read(&root().join("ARCHITECTURE.md"));
    let mut rows = BTreeMap::new();
    for line in architecture.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(first), Some(allowed)) = (cells.get(1), cells.get(3)) else {
            continue;
        };
        let Some(folder) = first
            .trim_start_matches('`')
            .split('`')
            .next()
            .and_then(|f| f.strip_suffix('/'))
        else {
            continue;
        };
        if !members.iter().any(|m| m == folder) {
            continue;
        }
        let named: BTreeSet<String> = allowed
            .split(';')
            .filter(|clause| !clause.contains("dev-dependenc"))
            .flat_map(|clause| {
                clause
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .filter(|word| members.contains(word))
            .collect();
        rows.insert(folder.to_owned(), named);
    }
    rows
}

#[test]
fn crates_depend_only_on_what_the_code_map_allows() {
    let members = members();
    let allowed = may_depend_on(&members);
    let mut problems = Vec::new();
    for member in &members {
        let Some(allowed) = allowed.get(member) else {
            problems.push(format!(
                "{member}: no row in ARCHITECTURE.md's code map (| `{member}/` | what | may depend on |)"
            ));
            continue;
        };
        let manifest = read(&root().join(member).join("Cargo.toml"));
        for dependency in dependencies(&manifest) {
            let internal = members.contains(&dependency.name);
            if internal
                && dependency.section != "dev-dependencies"
                && !allowed.contains(&dependency.name)
            {
                problems.push(format!(
                    "{member} depends on {} ([{}]), which its row in ARCHITECTURE.md does not allow \
                     (allowed: {allowed:?})",
                    dependency.name, dependency.section
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    // the parsing finds what is there (a broken parser would pass everything)
    assert!(allowed["command-api"].contains("accounts"), "{allowed:?}");
    assert!(allowed["domain"].is_empty(), "{allowed:?}");
    assert!(!allowed["query-api"].contains("command-api"), "{allowed:?}");
}

/// Each `.rs` file of the workspace (its crates and the root package), with the crate it
/// belongs to.
fn sources(members: &[String]) -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, into: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if !matches!(
                    name.to_str(),
                    Some("target" | "node_modules" | "web" | ".git")
                ) {
                    walk(&path, into);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                into.push(path);
            }
        }
    }
    let mut files = Vec::new();
    for member in members {
        let mut found = Vec::new();
        walk(&root().join(member), &mut found);
        files.extend(found.into_iter().map(|f| (member.clone(), f)));
    }
    for folder in ["src", "tests"] {
        let mut found = Vec::new();
        walk(&root().join(folder), &mut found);
        files.extend(found.into_iter().map(|f| ("shop".to_owned(), f)));
    }
    files
}

/// The part of a file that is not test code: nothing of files under `tests/` or named
/// `testing.rs`, and only what comes before the first `#[cfg(test)]` elsewhere.
fn production_code(path: &Path, text: &str) -> String {
    let relative = path.strip_prefix(root()).unwrap_or(path);
    let in_tests = relative.components().any(|c| c.as_os_str() == "tests");
    if in_tests || path.file_name().is_some_and(|n| n == "testing.rs") {
        return String::new();
    }
    text.split("#[cfg(test)]")
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The lines where `text` has SQL on `table`: a keyword that names a table (`FROM`, `JOIN`,
/// `INTO`, `UPDATE`, `TABLE`) followed by it.
fn sql_on(text: &str, table: &str) -> Vec<usize> {
    let mut words: Vec<(&str, usize)> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !word.is_empty() {
                words.push((word, number + 1));
            }
        }
    }
    words
        .windows(2)
        .filter(|pair| {
            matches!(pair[0].0, "FROM" | "JOIN" | "INTO" | "UPDATE" | "TABLE") && pair[1].0 == table
        })
        .map(|pair| pair[1].1)
        .collect()
}

#[test]
fn only_the_owner_crates_write_sql_on_events_and_users() {
    let members = members();
    let owners = [("events", "eventlog"), ("users", "accounts")];
    let mut problems = Vec::new();
    let mut scanned = 0;
    for (krate, path) in sources(&members) {
        let text = read(&path);
        let code = production_code(&path, &text);
        scanned += 1;
        for (table, owner) in owners {
            if krate == owner {
                continue;
            }
            for line in sql_on(&code, table) {
                problems.push(format!(
                    "{}:{line}: SQL on `{table}` outside `{owner}` (call a function of `{owner}` instead)",
                    path.strip_prefix(root()).unwrap_or(&path).display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    assert!(scanned > 100, "only {scanned} files found");
    // the scanner sees SQL where it is, and not in test code
    assert_eq!(
        sql_on(
            "let n = query(\"SELECT count(*)\n FROM events WHERE\");",
            "events"
        ),
        vec![2]
    );
    assert!(sql_on("DELETE FROM users_archive; -- from users", "users").is_empty());
    let eventlog_reads_events = read(&root().join("eventlog/src/streams.rs"));
    assert!(!sql_on(&eventlog_reads_events, "events").is_empty());
    assert!(production_code(
        &root().join("eventlog/src/log.rs"),
        "a\n#[cfg(test)]\nFROM events"
    )
    .ends_with("a\n"));
}

#[test]
fn test_support_is_compiled_only_for_tests() {
    let members = members();
    let mut problems = Vec::new();
    let mut gated = 0;
    for member in &members {
        let lib = root().join(member).join("src/lib.rs");
        let text = read(&lib);
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim() == "pub mod testing;" {
                if i > 0 && lines[i - 1].trim() == "#[cfg(any(test, feature = \"testing\"))]" {
                    gated += 1;
                } else {
                    problems.push(format!(
                        "{member}/src/lib.rs:{}: `pub mod testing` needs \
                         #[cfg(any(test, feature = \"testing\"))] above it",
                        i + 1
                    ));
                }
            }
        }
    }
    for manifest in members
        .iter()
        .map(|m| root().join(m).join("Cargo.toml"))
        .chain([root().join("Cargo.toml")])
    {
        for dependency in dependencies(&read(&manifest)) {
            if dependency.section != "dev-dependencies"
                && dependency.features.iter().any(|f| f == "testing")
            {
                problems.push(format!(
                    "{}: [{}] {} enables `testing`: test support only in [dev-dependencies]",
                    manifest.display(),
                    dependency.section,
                    dependency.name
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    assert!(gated >= 2, "the testing modules were not found");
}
