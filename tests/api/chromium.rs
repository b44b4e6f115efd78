//! Headless Chromium, for tests that render a page (`/docs`, the bench's report). Shared by
//! the test crates of the workspace (`#[path]`): the facilitator's and the bench's.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The browser: `$CHROMIUM`, else `chromium` (Debian) or `chromium-browser` on `PATH`.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "headless Chromium is required by this test and was not found (looked for $CHROMIUM, \
         `chromium` and `chromium-browser` on PATH). Install it: \
         `apt-get install -y chromium` (Debian)."
    );
}

/// The flags every run of the browser takes: headless, no sandbox (containers), nothing of
/// its own on the network.
pub const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    // Offline: every host but ours fails to resolve, so a page that needed a CDN would not
    // render.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
];

/// Run the browser with `args` on `url`, killing it after `limit`. Returns (status, stdout,
/// stderr). Output goes to files, so a large DOM cannot block the browser on a full pipe.
fn run_chromium(args: &[String], url: &str, limit: Duration) -> (bool, String, String) {
    let browser = chromium();
    let profile = tempfile::tempdir().expect("tempdir");
    let out_path = profile.path().join("stdout");
    let err_path = profile.path().join("stderr");
    let user_data = profile.path().join("profile");
    let mut child = Command::new(&browser)
        .args(FLAGS)
        .arg(format!("--user-data-dir={}", user_data.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", browser.display()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within {limit:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (
        status.success(),
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path).unwrap_or_default(),
    )
}

pub async fn run_chromium_async(args: Vec<String>, url: String) -> (bool, String, String) {
    actix_web::rt::task::spawn_blocking(move || run_chromium(&args, &url, Duration::from_secs(60)))
        .await
        .expect("chromium runner")
}

/// Screenshots kept for CI: `target/ci-artifacts` of the workspace (where `.ci/run` lists
/// them), whichever of its packages the test belongs to.
pub fn artifacts_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or(manifest);
    root.join("target/ci-artifacts")
}
