//! `x402-dev --state-file` (`x402-bench`'s second binary): the README's run command, and the official x402
//! clients paying through it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::Value;

use crate::chain_helpers::*;
use crate::process::get_json;
use crate::workspace_bin::workspace_bin;

struct DevProcess {
    child: std::process::Child,
    state: Value,
    state_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl DevProcess {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state_path = dir.path().join("dev-state.json");
        let mut child = Command::new(workspace_bin("x402-bench", "x402-dev"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("--state-file")
            .arg(&state_path)
            .env("APP__SERVER__PORT", "0")
            .env("APP__SERVER__WORKERS", "2")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dev");
        // Drain stdout (the banner and logs) so the process never blocks on a full pipe.
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || for _ in BufReader::new(stdout).lines() {});
        // The state file appears (renamed into place, complete) once the server is ready.
        let deadline = Instant::now() + Duration::from_secs(120);
        while !state_path.exists() {
            assert!(Instant::now() < deadline, "dev did not become ready");
            assert!(child.try_wait().unwrap().is_none(), "dev exited early");
            std::thread::sleep(Duration::from_millis(100));
        }
        let state = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
        Self {
            child,
            state,
            state_path,
            _dir: dir,
        }
    }

    fn stop(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

/// A failed test must not leave the server (and its anvil) running.
impl Drop for DevProcess {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the dev command then stops its anvil too.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
        }
    }
}

#[actix_web::test]
async fn dev_serves_a_local_chain_and_a_real_usdc_payment_settles() {
    let dev = DevProcess::start();
    let s = &dev.state;
    for key in [
        "facilitatorUrl",
        "clientId",
        "clientToken",
        "adminToken",
        "network",
        "rpcUrl",
        "asset",
    ] {
        assert!(
            s[key].as_str().is_some_and(|v| !v.is_empty()),
            "{key} in {s}"
        );
    }
    assert_eq!(s["network"], "base-sepolia");
    assert_eq!(s["chainId"], 84532);
    let mode = std::fs::metadata(&dev.state_path).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o077,
        0,
        "state file is private"
    );

    let api = s["facilitatorUrl"].as_str().unwrap().to_owned();
    let base = api.trim_end_matches("/api/v1").to_owned();
    let http = reqwest::Client::new();
    let health = get_json(&http, &format!("{base}/health"), None).await;
    assert_eq!(health["status"], "healthy");
    let status = get_json(&http, &format!("{api}/status"), None).await;
    assert_eq!(status["data"]["database"]["status"], "healthy");
    assert_eq!(status["data"]["database"]["backend"], "sqlite");

    // Pay with a payer key from the state file, signed here.
    let payer: PrivateKeySigner = s["payerPrivateKeys"][0].as_str().unwrap().parse().unwrap();
    let asset: Address = s["asset"].as_str().unwrap().parse().unwrap();
    let pay = Payment::usdc(payer.address(), 84532, asset, 5_000);
    let answer: Value = http
        .post(format!("{api}/settle"))
        .header("X-Client-ID", s["clientId"].as_str().unwrap())
        .header("X-Client-Token", s["clientToken"].as_str().unwrap())
        .json(&pay.v1(&pay.sign(&payer), 5_000))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["success"], true, "{answer}");

    // The official clients, v1 and v2, pay through it end to end.
    for script in ["tools/e2e/v1.mjs", "tools/e2e/v2.mjs"] {
        let out = Command::new("node")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg(script)
            .arg(&dev.state_path)
            .output()
            .expect("node");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{script} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last: Value =
            serde_json::from_str(stdout.lines().last().unwrap()).expect("JSON result line");
        assert_eq!(last["ok"], true, "{last}");
        assert!(last["transaction"].as_str().unwrap().starts_with("0x"));
    }

    let rpc_url = s["rpcUrl"].as_str().unwrap().to_owned();
    // Both payments landed on chain: the e2e payee (tools/e2e/common.mjs) holds 2 x 0.01 USDC.
    let call = format!(
        "0x70a08231{:0>64}",
        "0000000000000000000000000000000000000e2e"
    );
    let balance: Value = http
        .post(&rpc_url)
        .json(
            &serde_json::json!({"jsonrpc":"2.0","id":1,"method":"eth_call",
            "params":[{"to": s["asset"], "data": call}, "latest"]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let balance = U256::from_str_radix(
        balance["result"].as_str().unwrap().trim_start_matches("0x"),
        16,
    )
    .unwrap();
    assert_eq!(balance, U256::from(20_000));
    assert!(dev.stop().success(), "graceful exit on SIGTERM");
    // Its anvil went with it.
    assert!(http
        .post(&rpc_url)
        .json(&serde_json::json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}))
        .send()
        .await
        .is_err());
}
