//! The `x402-bench` binary run as a child process, and what its runs need.

use std::path::Path;
use std::process::{Command, Output};

use alloy::signers::local::PrivateKeySigner;

use super::ROOT;

/// The binary, as an operator runs it (off the test's thread: the facilitators it measures
/// may run on it).
pub async fn bench_process(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_x402-bench"));
    command.current_dir(ROOT).args(args).env("RUST_LOG", "warn");
    actix_web::rt::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run x402-bench")
}

/// Run the binary and require exit 0; its (stdout, stderr).
pub async fn passing_bench(args: &[&str]) -> (String, String) {
    let o = bench_process(args).await;
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The binary with these arguments exits non-zero with `message` on stderr, and no panic.
pub async fn refused(what: &str, args: &[&str], message: &str) {
    let o = bench_process(args).await;
    let (stdout, stderr) = text(&o);
    assert!(!o.status.success(), "{what}: exit 0\n{stdout}\n{stderr}");
    assert!(
        stderr.contains(message),
        "{what}: {message:?} not in\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{what}: panic\n{stderr}");
}

/// Payer keys, one per line, in a private file.
pub fn keys_file(dir: &Path, keys: &[PrivateKeySigner]) -> String {
    let path = dir.join("payers.txt");
    let lines: Vec<String> = keys
        .iter()
        .map(|k| format!("0x{}", alloy::hex::encode(k.to_bytes())))
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path.to_str().unwrap().to_owned()
}
