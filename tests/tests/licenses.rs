//! Licences, checked like `cargo deny check licenses` would: the repository
//! has the LICENSE its manifests name, and every package in the build
//! (`cargo metadata`, the lock file's whole graph) is available under
//! licences from the allow-list below.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

/// Licences a dependency may be used under: permissive ones, and MPL-2.0
/// (file-level copyleft, compatible with shipping Apache-2.0 binaries).
const ALLOWED: &[&str] = &[
    "0BSD",
    "Apache-2.0",
    "BSD-1-Clause",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSL-1.0",
    "CC0-1.0",
    "CDLA-Permissive-2.0",
    "ISC",
    "MIT",
    "MPL-2.0",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "Unlicense",
    "Zlib",
];

/// Whether an SPDX expression can be satisfied with allowed licences
/// (`OR`: one side suffices; `AND`: both are needed; `A WITH exception`
/// counts as `A`; the legacy `A/B` means `A OR B`).
fn allowed(expression: &str) -> bool {
    let tokens: Vec<String> = expression
        .replace('(', " ( ")
        .replace(')', " ) ")
        .replace('/', " OR ")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mut at = 0;
    let verdict = or_expression(&tokens, &mut at);
    verdict && at == tokens.len()
}

fn or_expression(tokens: &[String], at: &mut usize) -> bool {
    let mut any = and_expression(tokens, at);
    while tokens.get(*at).is_some_and(|t| t == "OR") {
        *at += 1;
        any |= and_expression(tokens, at);
    }
    any
}

fn and_expression(tokens: &[String], at: &mut usize) -> bool {
    let mut all = term(tokens, at);
    while tokens.get(*at).is_some_and(|t| t == "AND") {
        *at += 1;
        all &= term(tokens, at);
    }
    all
}

fn term(tokens: &[String], at: &mut usize) -> bool {
    let Some(token) = tokens.get(*at) else {
        return false;
    };
    *at += 1;
    if token == "(" {
        let inner = or_expression(tokens, at);
        if tokens.get(*at).is_some_and(|t| t == ")") {
            *at += 1;
            return inner;
        }
        return false;
    }
    if tokens.get(*at).is_some_and(|t| t == "WITH") {
        *at += 2;
    }
    ALLOWED.contains(&token.as_str())
}

#[test]
fn spdx_expressions_are_read_as_licences_combine() {
    assert!(allowed("MIT OR Apache-2.0"));
    assert!(allowed("MIT/Apache-2.0"));
    assert!(allowed("(MIT OR Apache-2.0) AND Unicode-3.0"));
    assert!(allowed("Apache-2.0 WITH LLVM-exception OR MIT"));
    assert!(allowed("MIT OR Apache-2.0 OR LGPL-2.1-or-later"));
    assert!(!allowed("GPL-3.0-only"));
    assert!(!allowed("MIT AND GPL-2.0-only"));
    assert!(!allowed("(MIT"));
}

#[test]
fn the_repository_has_the_licence_its_manifests_name() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("license = \"Apache-2.0\""), "{manifest}");
    let licence = std::fs::read_to_string(root.join("LICENSE")).expect("a LICENSE file");
    assert!(
        licence.contains("Apache License"),
        "LICENSE is the Apache License"
    );
    assert!(licence.contains("Version 2.0, January 2004"));
}

#[test]
fn every_dependency_is_under_an_allowed_licence() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    // The dependencies built for this machine's platform: what we ship
    // (the other platforms' crates, e.g. Android's, are never downloaded
    // by a build here, and --offline cannot read them).
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = Command::new(rustc).arg("-vV").output().expect("rustc -vV");
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let host = version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc names its host")
        .trim()
        .to_owned();
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(&root)
        .output()
        .expect("cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut refused = Vec::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap_or("?");
        match package["license"].as_str() {
            Some(expression) if allowed(expression) => {}
            other => refused.push(format!("{name}: {other:?}")),
        }
    }
    assert!(
        refused.is_empty(),
        "not under an allowed licence: {refused:#?}"
    );
}
