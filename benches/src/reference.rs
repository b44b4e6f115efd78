//! The official TypeScript facilitator (`tools/bench/reference-facilitator.mjs`: `@x402/core`'s
//! `x402Facilitator` with `@x402/evm`'s `ExactEvmScheme`, v1 and v2 (and optionally its
//! `BatchSettlementEvmScheme`), or `@x402/svm`'s
//! `ExactSvmScheme`) as a child process, for `bench --compare-reference` and the tests. On EVM
//! it needs Multicall3 on its chain (`DevnetOptions::multicall3`).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use anyhow::{bail, Context as _};

pub struct ReferenceFacilitator {
    child: Child,
    /// Base URL (`/verify`, `/settle`, `/supported` under it).
    pub url: String,
}

impl ReferenceFacilitator {
    /// Start it on `rpc_url` (chain `chain_id`, served as `eip155:<chain_id>` and v1
    /// `base-sepolia`), settling with `key`; returns once it listens.
    pub fn start(rpc_url: &str, chain_id: u64, key: &PrivateKeySigner) -> anyhow::Result<Self> {
        Self::start_evm(rpc_url, chain_id, key, false)
    }

    /// As [`ReferenceFacilitator::start`]; with `channels`, also `@x402/evm`'s
    /// `BatchSettlementEvmScheme` (x402 v2, no authorizer key: servers sign their claims).
    pub fn start_evm(
        rpc_url: &str,
        chain_id: u64,
        key: &PrivateKeySigner,
        channels: bool,
    ) -> anyhow::Result<Self> {
        Self::spawn(&[
            ("REFERENCE_RPC_URL", rpc_url.to_owned()),
            (
                "REFERENCE_PRIVATE_KEY",
                format!("0x{}", alloy::hex::encode(key.to_bytes())),
            ),
            ("REFERENCE_CHAIN_ID", chain_id.to_string()),
            (
                "REFERENCE_BATCH_SETTLEMENT",
                if channels { "1" } else { "0" }.to_owned(),
            ),
        ])
    }

    /// Start it serving Solana only: `@x402/svm`'s `ExactSvmScheme` (x402 v2, on
    /// `solana-devnet`'s CAIP-2 id) on the cluster at `rpc_url`, paying fees with `fee_payer`;
    /// returns once it listens.
    pub fn start_svm(rpc_url: &str, fee_payer: &devnet::solana::Keypair) -> anyhow::Result<Self> {
        Self::spawn(&[
            ("REFERENCE_SVM_RPC_URL", rpc_url.to_owned()),
            ("REFERENCE_SVM_FEE_PAYER_KEY", fee_payer.to_base58_string()),
        ])
    }

    /// Start it with `start` (off the async threads: it waits for the process) and name it
    /// "reference", as the bench measures it.
    pub(crate) async fn target(
        start: impl FnOnce() -> anyhow::Result<Self> + Send + 'static,
    ) -> anyhow::Result<(super::engine::Target, Self)> {
        let process = actix_web::rt::task::spawn_blocking(start).await??;
        let target = super::engine::Target {
            name: "reference".into(),
            url: process.url.clone(),
            headers: reqwest::header::HeaderMap::new(),
        };
        Ok((target, process))
    }

    /// The script with `env` (keys travel there, never on a command line).
    fn spawn(env: &[(&str, String)]) -> anyhow::Result<Self> {
        let tools = devnet::tools_dir()?;
        let script = tools.join("bench/reference-facilitator.mjs");
        let mut child = Command::new("node")
            .arg(&script)
            .current_dir(&tools)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start node (the TypeScript reference facilitator needs Node.js)")?;
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let mut pipe = child.stderr.take().expect("piped stderr");
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut s = stderr.lock().expect("stderr lock");
                    if s.len() < 16 * 1024 {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            });
        }
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            // Keep draining: a full pipe would block the server.
            for _ in lines {}
        });
        let line = rx.recv_timeout(Duration::from_secs(60));
        let mut this = Self {
            child,
            url: String::new(),
        };
        let Ok(line) = line else {
            this.kill();
            bail!(
                "the reference facilitator ({}) did not start:\n{}",
                script.display(),
                stderr.lock().expect("stderr lock")
            );
        };
        let ready: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("reference facilitator said {line:?}"))?;
        this.url = ready["url"]
            .as_str()
            .with_context(|| format!("reference facilitator said {line:?}"))?
            .to_owned();
        Ok(this)
    }

    fn kill(&mut self) {
        super::binary::terminate(&mut self.child, Duration::from_secs(1));
    }
}

impl Drop for ReferenceFacilitator {
    fn drop(&mut self) {
        self.kill();
    }
}
