//! Test-only helpers: where the shared reference data and the committed fixtures live.
//!
//! Reference data is read in place from `../shared/data` (relative to the workspace root), or
//! from `$HERD_SHARED_DATA` when set. When it is absent, tests call [`shared_data`] and get
//! `None` after a plain `skip:` line has been written straight to stderr (not through the test
//! harness's capture), so a skipped test is never a silent pass.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;

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
