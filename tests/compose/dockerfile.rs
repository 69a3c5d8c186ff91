//! `Dockerfile`: builds what the tests run, installs every workspace binary
//! on PATH, runs as a user other than root.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::dockerfile::{dockerfile, workspace_bins};
use crate::common::files::text;

#[test]
fn the_dockerfile_builds_every_binary_as_the_tests_do_and_installs_it_non_root() {
    let stages = dockerfile();
    assert!(stages.len() >= 2, "multi-stage");
    let (build, runtime) = (&stages[0], stages.last().unwrap());
    assert_eq!(build.from, "rust:1.95-bookworm");
    assert_eq!(runtime.from, "debian:bookworm-slim");
    let build_name = build.name.clone().expect("the build stage is named");
    let cargo = build
        .steps
        .iter()
        .find(|(op, a)| op == "RUN" && a.contains("cargo build"))
        .expect("the build stage runs cargo build")
        .1
        .clone();
    let cargo_flags: BTreeSet<&str> = cargo
        .split("cargo build")
        .nth(1)
        .unwrap()
        .split("&&")
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let test_sh = text("scripts/test.sh");
    let tests_build = test_sh
        .lines()
        .find(|l| l.trim_start().starts_with("cargo build"))
        .expect("scripts/test.sh builds the binaries");
    for flag in tests_build.split_whitespace().skip(2) {
        assert!(
            cargo_flags.contains(flag),
            "the Dockerfile's cargo build lacks {flag} of scripts/test.sh's {tests_build:?}"
        );
    }
    for flag in ["--release", "--locked", "--bins", "--workspace"] {
        assert!(cargo_flags.contains(flag), "cargo build without {flag}");
    }
    let bins = workspace_bins();
    let exe = Path::new(env!("CARGO_BIN_EXE_weir")).file_name().unwrap();
    assert!(bins.contains(exe.to_str().unwrap()));
    let copied: BTreeSet<String> = cargo
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("target/release/"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        copied, bins,
        "the build stage copies out every workspace binary"
    );
    let mut installed = BTreeSet::new();
    for (op, args) in &runtime.steps {
        if op == "COPY" && args.contains(&format!("--from={build_name}")) {
            let w: Vec<&str> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let (dest, srcs) = w.split_last().unwrap();
            assert_eq!(*dest, "/usr/local/bin/", "binaries go on PATH");
            installed.extend(
                srcs.iter()
                    .map(|s| s.rsplit('/').next().unwrap().to_owned()),
            );
        }
    }
    assert_eq!(
        installed, bins,
        "the runtime image installs every workspace binary"
    );
    let runtime_run: String = runtime
        .steps
        .iter()
        .filter(|(op, _)| op == "RUN")
        .map(|(_, a)| a.as_str())
        .collect();
    for pkg in ["ca-certificates", "curl"] {
        assert!(runtime_run.contains(pkg), "the runtime image lacks {pkg}");
    }
    let user = runtime
        .steps
        .iter()
        .rev()
        .find(|(op, _)| op == "USER")
        .expect("the runtime image sets a USER")
        .1
        .clone();
    assert!(
        !["root", "0", "0:0"].contains(&user.as_str()),
        "runs as {user}"
    );
}
