//! Docs that cannot drift: the generated pages under `docs/reference/` must equal what
//! `lms reference <page>` prints from the code, and every relative link of README.md and
//! `docs/` must name a file of the repository.
//!
//! `LMS_BLESS=1 cargo test --test docs` rewrites the generated pages instead of comparing them.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Compares (or, with `LMS_BLESS=1`, rewrites) `docs/reference/<file>` with `lms reference <page>`.
fn generated_page_is_current(page: &str, file: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_lms"))
        .args(["reference", page])
        .output()
        .expect("running lms reference");
    assert!(
        output.status.success(),
        "lms reference {page} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generated = String::from_utf8(output.stdout).expect("the page is UTF-8");
    let path = repository().join("docs/reference").join(file);
    if std::env::var_os("LMS_BLESS").is_some_and(|value| value != "0") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(old, new)| old != new)
            .map_or_else(
                || committed.lines().count().min(generated.lines().count()) + 1,
                |index| index + 1,
            );
        panic!(
            "docs/reference/{file} is stale (first difference at line {line}): \
             run `LMS_BLESS=1 cargo test --test docs` to regenerate"
        );
    }
}

#[test]
fn the_configuration_reference_is_generated_from_the_cli() {
    generated_page_is_current("config", "configuration.md");
}

#[test]
fn the_api_reference_is_generated_from_the_proto_comments() {
    generated_page_is_current("api", "api.md");
}

#[test]
fn the_security_reference_is_generated_from_the_policy() {
    generated_page_is_current("security", "security.md");
}

fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![repository().join("README.md")];
    let mut folders = vec![repository().join("docs")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|extension| extension == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Returns the targets of the inline Markdown links `[text](target)` of `text`, with their line.
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut targets = Vec::new();
    let mut in_code_block = false;
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code_block = !in_code_block;
            continue;
        }
        if in_code_block {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push((index + 1, after[..end].to_owned()));
            rest = &after[end..];
        }
    }
    targets
}

#[test]
fn every_relative_link_of_the_docs_names_a_file_of_the_repository() {
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, target) in link_targets(&text) {
            if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            let path = target.split('#').next().unwrap_or_default();
            let resolved = file.parent().unwrap().join(path);
            if !resolved.exists() {
                let shown = file.strip_prefix(repository()).unwrap_or(&file);
                broken.push(format!("{}:{line}: {target}", shown.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to missing files:\n{}",
        broken.join("\n")
    );
}
