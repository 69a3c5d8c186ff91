//! `.dockerignore`: sends the build every file it needs (manifests, crate
//! roots, files the sources embed) and leaves out what it does not.

use std::path::PathBuf;

use crate::common::dockerfile::docker_ignored;
use crate::common::files::{root, text};

#[test]
fn dockerignore_sends_every_file_the_build_needs_and_nothing_it_does_not() {
    let ignore: Vec<String> = text(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let mut needed = vec!["Cargo.toml".to_owned(), "Cargo.lock".to_owned()];
    let manifest = text("Cargo.toml");
    let members = manifest
        .split("members = [")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap();
    for m in members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
    {
        needed.push(format!("{m}/Cargo.toml"));
        needed.push(format!("{m}/src/lib.rs"));
    }
    // Files the sources embed (include_str!/include_bytes!), anywhere in
    // the sources of the binaries and libraries.
    let mut dirs: Vec<PathBuf> = ["src", "services", "libs"]
        .iter()
        .map(|d| root().join(d))
        .collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap();
            if path.is_dir() {
                if !["target", "node_modules", "tests", "benches"].contains(&name) {
                    dirs.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let src = std::fs::read_to_string(&path).unwrap();
            let includes = ["include_str!(\"", "include_bytes!(\""]
                .into_iter()
                .flat_map(|m| src.split(m).skip(1));
            for part in includes {
                let rel = part.split('"').next().unwrap();
                let file = path
                    .parent()
                    .unwrap()
                    .join(rel)
                    .canonicalize()
                    .unwrap_or_else(|_| panic!("{} includes missing {rel}", path.display()));
                let rel = file.strip_prefix(root().canonicalize().unwrap()).unwrap();
                needed.push(rel.to_str().unwrap().to_owned());
            }
        }
    }
    assert!(
        needed.iter().any(|n| n == "clients/js/weir-client.js"),
        "the edge embeds the JS client: {needed:?}"
    );
    for n in &needed {
        assert!(root().join(n).exists(), "{n} does not exist");
        assert!(
            !docker_ignored(n, &ignore),
            ".dockerignore leaves out {n}, which the build needs"
        );
    }
    for n in [
        "deploy/nats/nats1.conf",
        "target/debug/weir",
        "clients/js/node_modules/x",
        ".git/HEAD",
    ] {
        assert!(docker_ignored(n, &ignore), ".dockerignore sends {n}");
    }
}
