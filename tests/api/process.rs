//! The real `x402-facilitator` binary as a child process, configured through the environment
//! as an operator would, with everything it prints captured.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devnet::Devnet;

use crate::helpers::*;

pub struct Facilitator {
    child: Child,
    pub url: String,
    output: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// Collect a stream's lines; `on_line` sees each one first.
fn capture(
    stream: impl Read + Send + 'static,
    output: Arc<Mutex<Vec<String>>>,
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            on_line(&line);
            output.lock().unwrap().push(line);
        }
    })
}

impl Facilitator {
    pub fn start(db_url: &str, devnet: &Devnet) -> Self {
        Self::start_with(db_url, devnet, &[])
    }

    /// Start with extra environment variables (they win over the defaults here).
    pub fn start_with(db_url: &str, devnet: &Devnet, extra_env: &[(&str, &str)]) -> Self {
        Self::spawn_with(db_url, devnet, extra_env).wait()
    }

    /// `start_with`, without waiting for the process to listen.
    pub fn spawn_with(db_url: &str, devnet: &Devnet, extra_env: &[(&str, &str)]) -> Starting {
        let key = format!(
            "0x{}",
            alloy::hex::encode(devnet.facilitator_keys[0].to_bytes())
        );
        let mut command = Command::new(env!("CARGO_BIN_EXE_x402-facilitator"));
        command
            .args([
                "--config",
                concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml"),
                "serve",
            ])
            .env("APP__SERVER__PORT", "0")
            .env("APP__SERVER__WORKERS", "1")
            .env("APP__DATABASE__URL", db_url)
            // A throwaway database (a SIGKILL loses nothing either way).
            .env("APP__DATABASE__DURABLE_COMMITS", "false")
            .env("APP__AUTH__JWT_SECRET", JWT_SECRET)
            .env("APP__AUTH__ADMIN_TOKEN", ADMIN_TOKEN)
            .env("APP__AUTH__CLIENT_TOKEN_KEY", CLIENT_KEY)
            .env("APP__NETWORKS__BASE_SEPOLIA__RPC_URL", &devnet.rpc_url)
            .env(
                "APP__NETWORKS__BASE_SEPOLIA__USDC_ADDRESS",
                devnet.usdc.to_checksum(None),
            )
            .env("APP__NETWORKS__BASE_SEPOLIA__RECEIPT_TIMEOUT_SECS", "20")
            .env("SIGNER_KEYS_BASE_SEPOLIA", key)
            .env("APP__LOG__FORMAT", "json")
            .env("RUST_LOG", "info");
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn facilitator");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let out = capture(child.stdout.take().unwrap(), output.clone(), move |line| {
            if let Some(i) = line.find("listening on http://") {
                let url = line[i + "listening on ".len()..]
                    .split('"')
                    .next()
                    .unwrap()
                    .to_owned();
                let _ = tx.send(url);
            }
        });
        let err = capture(child.stderr.take().unwrap(), output.clone(), |_| {});
        Starting {
            process: Self {
                child,
                url: String::new(),
                output,
                readers: vec![out, err],
            },
            listening: rx,
        }
    }

    /// The process's resident memory (`VmRSS`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }

    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }

    /// Send `signal` (`TERM`, `INT`), wait for the exit, and return everything the process
    /// printed (stdout and stderr, line by line; complete: the readers end when the pipes
    /// close).
    pub fn stop_with(mut self, signal: &str) -> (std::process::ExitStatus, Vec<String>) {
        std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        for reader in std::mem::take(&mut self.readers) {
            reader.join().unwrap();
        }
        let lines = self.output.lock().unwrap().clone();
        (status, lines)
    }
}

/// A process spawned, not yet listening (killed if dropped).
pub struct Starting {
    process: Facilitator,
    listening: std::sync::mpsc::Receiver<String>,
}

/// How long a process may take to listen.
const START_WITHIN: Duration = Duration::from_secs(60);

impl Starting {
    /// Block until it listens.
    pub fn wait(mut self) -> Facilitator {
        self.process.url = self
            .listening
            .recv_timeout(START_WITHIN)
            .expect("facilitator did not start");
        self.process
    }

    /// Wait until it listens without blocking the runtime (other tasks go on meanwhile).
    pub async fn listening(mut self) -> Facilitator {
        let deadline = std::time::Instant::now() + START_WITHIN;
        loop {
            match self.listening.try_recv() {
                Ok(url) => {
                    self.process.url = url;
                    return self.process;
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "facilitator did not start"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("facilitator did not start: {e}"),
            }
        }
    }
}

/// POST JSON to a running process (optionally with a bearer token) and read the JSON answer.
pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: &serde_json::Value,
) -> serde_json::Value {
    let mut req = http.post(url).json(body);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap().json().await.unwrap()
}

/// GET JSON from a running process (optionally with a bearer token).
pub async fn get_json(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
) -> serde_json::Value {
    let mut req = http.get(url);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap().json().await.unwrap()
}

impl Drop for Facilitator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
