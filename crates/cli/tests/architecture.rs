//! Keeps ARCHITECTURE.md's dependency picture true: each crate may depend only on the crates
//! listed for it here, so nothing points back up.

use std::collections::BTreeMap;
use std::process::Command;

/// Allowed workspace-internal edges (package names), the same table as ARCHITECTURE.md.
const ALLOWED: &[(&str, &[&str])] = &[
    ("herd-kernels", &[]),
    ("herd-formats", &[]),
    ("herd-tokenizer", &[]),
    ("herd-chat", &[]),
    ("herd-model", &["herd-kernels", "herd-formats"]),
    (
        "herd-engine",
        &[
            "herd-model",
            "herd-tokenizer",
            "herd-chat",
            "herd-formats",
            "herd-kernels",
        ],
    ),
    (
        "herd-server",
        &["herd-engine", "herd-model", "herd-tokenizer", "herd-chat"],
    ),
    (
        "herd-cli",
        &[
            "herd-engine",
            "herd-model",
            "herd-formats",
            "herd-tokenizer",
            "herd-server",
        ],
    ),
    ("herd-testdata", &[]),
];

#[test]
fn crate_dependencies_point_only_down() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let packages = meta["packages"].as_array().unwrap();
    let names: Vec<&str> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in packages {
        let name = p["name"].as_str().unwrap();
        let ok = allowed.get(name).unwrap_or_else(|| {
            panic!(
                "crate {name} is not in the dependency table; add it here and to ARCHITECTURE.md"
            )
        });
        for dep in p["dependencies"].as_array().unwrap() {
            let dep_name = dep["name"].as_str().unwrap();
            let is_dev = dep["kind"].as_str() == Some("dev");
            if names.contains(&dep_name) && !is_dev {
                assert!(
                    ok.contains(&dep_name),
                    "{name} must not depend on {dep_name}"
                );
            }
        }
    }
}
