//! Test-only helpers: where the shared reference data and the committed fixtures live.
//!
//! Reference data is read in place from `../shared/data` (relative to the workspace root), or
//! from `$HERD_SHARED_DATA` when set. When it is absent, tests call [`shared_data`] and get
//! `None` after a plain `skip:` line has been written straight to stderr (not through the test
//! harness's capture), so a skipped test is never a silent pass.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

/// The workspace root (the folder holding the top Cargo.toml).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The committed fixtures folder, `tests/fixtures` under the workspace root.
pub fn fixtures() -> PathBuf {
    workspace_root().join("tests/fixtures")
}

/// `../shared/data`, or `None` after printing a skip line naming `test` when it is absent.
pub fn shared_data(test: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("HERD_SHARED_DATA") {
        Some(d) => PathBuf::from(d),
        None => workspace_root().join("../shared/data"),
    };
    if dir.join("README.md").is_file() {
        Some(dir)
    } else {
        skip(
            test,
            &format!("reference data not found at {}", dir.display()),
        );
        None
    }
}

/// Writes `skip: TEST: REASON` directly to stderr, bypassing output capture.
pub fn skip(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "skip: {test}: {reason}");
}

/// A fixture's JSON file (its `expected.json`, a reference's metadata), parsed.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The token ids a fixture's JSON lists under `ids`.
pub fn ids(json: &serde_json::Value) -> Vec<u32> {
    json["ids"]
        .as_array()
        .expect("an `ids` array")
        .iter()
        .map(|v| v.as_u64().expect("an id") as u32)
        .collect()
}

/// The largest `|a[i] − b[i]|` (logits against their reference).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}
