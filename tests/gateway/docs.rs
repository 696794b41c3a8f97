//! The docs say what the gateway does: the configuration reference matches
//! `--help` (every flag, its variable, its default), the metrics table
//! matches what `/metrics` exposes, and every file or page the README, the
//! docs and the compose file name exists.

use libtest_mimic::{Failed, Trial};
use std::{collections::BTreeMap, path::Path, process::Command};

const BINARY: &str = env!("CARGO_BIN_EXE_iggy-grpc");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub fn tests() -> Vec<Trial> {
    vec![
        Trial::test(
            "docs::configuration_matches_help",
            configuration_matches_help,
        ),
        Trial::test("docs::referenced_files_exist", referenced_files_exist),
        Trial::test("docs::metrics_table_matches_exposition", metrics_table),
    ]
}

/// A flag as documented: its environment variable and default, if any.
#[derive(Debug, Default, PartialEq, Eq)]
struct Flag {
    env: Option<String>,
    default: Option<String>,
}

/// The flags `--help` lists (without --help and --version).
fn flags_in_help() -> Result<BTreeMap<String, Flag>, Failed> {
    let mut command = Command::new(BINARY);
    command.arg("--help");
    // The help shows a variable's current value: show none.
    for (name, _) in std::env::vars() {
        if name.starts_with("IGGY") {
            command.env_remove(name);
        }
    }
    let output = command.output()?;
    let help = String::from_utf8(output.stdout)?;
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("--")
            || trimmed.starts_with("-h, --")
            || trimmed.starts_with("-V, --")
        {
            let name = trimmed
                .split_whitespace()
                .find(|word| word.starts_with("--"))
                .ok_or("a flag line without a flag")?;
            current = Some(name.to_owned());
            flags.insert(name.to_owned(), Flag::default());
        } else if let Some(flag) = current.as_ref().and_then(|name| flags.get_mut(name)) {
            if let Some(env) = trimmed.strip_prefix("[env: ") {
                flag.env = Some(env.trim_end_matches(']').trim_end_matches('=').to_owned());
            } else if let Some(default) = trimmed.strip_prefix("[default: ") {
                flag.default = Some(default.trim_end_matches(']').to_owned());
            }
        }
    }
    flags.remove("--help");
    flags.remove("--version");
    Ok(flags)
}

/// The rows of the table in docs/configuration.md: flag, variable, default.
fn flags_in_doc() -> Result<BTreeMap<String, (String, String)>, Failed> {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/configuration.md"))?;
    let mut flags = BTreeMap::new();
    for line in doc.lines().filter(|line| line.starts_with("| `--")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, flag, env, default, ..] = cells.as_slice() else {
            return Err(format!("a row without its cells: {line}").into());
        };
        flags.insert(
            flag.trim_matches('`').to_owned(),
            (env.trim_matches('`').to_owned(), (*default).to_owned()),
        );
    }
    Ok(flags)
}

fn configuration_matches_help() -> Result<(), Failed> {
    let help = flags_in_help()?;
    let doc = flags_in_doc()?;
    assert!(help.len() > 30, "--help lists the flags: {help:?}");
    let mut problems = Vec::new();
    for (name, flag) in &help {
        let Some((env, default)) = doc.get(name) else {
            problems.push(format!("{name} is not in docs/configuration.md"));
            continue;
        };
        if flag.env.as_deref().unwrap_or("") != env {
            problems.push(format!(
                "{name}: --help says env {:?}, the doc {env:?}",
                flag.env
            ));
        }
        if let Some(value) = &flag.default
            && !value.is_empty()
            && !default.contains(&format!("`{value}`"))
        {
            problems.push(format!(
                "{name}: --help says default {value:?}, the doc {default:?}"
            ));
        }
    }
    for name in doc.keys().filter(|name| !help.contains_key(*name)) {
        problems.push(format!("{name} is documented but not a flag"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

/// Paths in backticks or Markdown links that name a file of the repository.
fn referenced_paths(text: &str) -> Vec<String> {
    const ROOTS: [&str; 7] = [
        "src/",
        "tests/",
        "proto/",
        "benches/",
        "docs/",
        ".ci/",
        "../shared/",
    ];
    let mut paths = Vec::new();
    for piece in text.split(['`', '(', ')', ' ', '"']) {
        let piece = piece.split('#').next().unwrap_or("");
        let is_file = piece.ends_with(".md")
            || piece.ends_with(".rs")
            || piece.ends_with(".proto")
            || piece.ends_with(".py")
            || piece.ends_with(".yaml")
            || piece.ends_with(".toml")
            || piece.ends_with('/');
        if is_file && (ROOTS.iter().any(|root| piece.starts_with(root)) || !piece.contains('/')) {
            paths.push(piece.to_owned());
        }
    }
    paths
}

fn referenced_files_exist() -> Result<(), Failed> {
    let root = Path::new(ROOT);
    let mut pages = vec![root.join("README.md"), root.join("docker-compose.yaml")];
    for entry in std::fs::read_dir(root.join("docs"))? {
        pages.push(entry?.path());
    }
    let mut missing = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page)?;
        // Links in docs/ are relative to docs/; backticked paths to the root.
        let base = page.parent().unwrap_or(root);
        for path in referenced_paths(&text) {
            if path.is_empty() || path.starts_with("../shared/") {
                continue;
            }
            checked += 1;
            let found = root.join(&path).exists()
                || base.join(&path).exists()
                || is_known_elsewhere(root, &path);
            if !found {
                missing.push(format!("{}: {path}", page.display()));
            }
        }
    }
    assert!(checked > 30, "the check found the references ({checked})");
    assert!(
        missing.is_empty(),
        "named but missing:\n{}",
        missing.join("\n")
    );
    Ok(())
}

/// A bare file name (`token.rs`) that exists somewhere under `src/`,
/// `tests/` or `benches/`, as the docs name files inside a folder they just
/// named.
fn is_known_elsewhere(root: &Path, name: &str) -> bool {
    if name.contains('/') {
        return false;
    }
    fn walk(dir: &Path, name: &str) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|entry| {
            let path = entry.path();
            path.file_name().is_some_and(|file| file == name)
                || (path.is_dir() && walk(&path, name))
        })
    }
    ["src", "tests", "benches", "proto"]
        .iter()
        .any(|dir| walk(&root.join(dir), name))
}

/// The metrics table in operations.md lists exactly the metrics the
/// gateway exposes.
fn metrics_table() -> Result<(), Failed> {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/operations.md"))?;
    let mut documented: Vec<String> = doc
        .lines()
        .filter(|line| line.starts_with("| `iggy_grpc_"))
        .filter_map(|line| line.split('|').nth(1))
        .flat_map(|cell| cell.split(", "))
        .map(|name| {
            let name = name.trim().trim_matches('`');
            let name = name.split('{').next().unwrap_or(name);
            name.trim_end_matches("_total").to_owned()
        })
        .collect();
    documented.sort();
    // Labelled series appear with their first value: make one of each.
    iggy_grpc::metrics::count_auth_failure("docs_check");
    iggy_grpc::metrics::count_rate_limited("docs_check");
    iggy_grpc::metrics::MethodCalls::new("docs_check")
        .record(tonic::Code::Ok, std::time::Duration::ZERO);
    let mut exposed: Vec<String> = iggy_grpc::metrics::render()
        .lines()
        .filter_map(|line| line.strip_prefix("# HELP "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    exposed.sort();
    assert_eq!(documented, exposed, "docs/operations.md against /metrics");
    Ok(())
}
