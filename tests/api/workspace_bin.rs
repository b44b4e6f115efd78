//! A binary of another package of this workspace, for a test that runs it as an operator would
//! (`CARGO_BIN_EXE_<name>` names only the binaries of the test's own package). Shared by the
//! test crates of the workspace (`#[path]`): the facilitator's and the bench's.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Build `bin` of `package` into this test's target directory and profile (a no-op when it is
/// fresh, e.g. under `cargo test --workspace`) and return its path: never a stale build.
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    // This test runs as `<target>/<profile dir>/deps/<test>-<hash>`.
    let exe = std::env::current_exe().expect("the test's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from <target>/<profile>/deps");
    let target = profile_dir.parent().expect("the target directory");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("no profile in {}", exe.display()),
    };
    let out = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--locked", "--quiet", "--message-format=json"])
        .args(["--profile", profile, "-p", package, "--bin", bin])
        .arg("--target-dir")
        .arg(target)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo build -p {package} --bin {bin} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo built no executable {bin}"))
}
