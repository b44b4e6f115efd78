//! `bench --binary NAME=PATH`: another build of this facilitator (an earlier release, a branch)
//! as a child process on the bench's chain, so that builds are compared in one run on one
//! chain. It is started as an operator would (`PATH serve --config FILE`, a fresh SQLite file,
//! its signer keys in a file), and given a client key through its REST API (signup, login,
//! `POST /api/v1/clients`), so it needs nothing of this build's code.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{bail, Context as _};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{json, Value};

use super::engine::Target;

/// `NAME=PATH`, as given on the command line.
pub fn parse(spec: &str) -> anyhow::Result<(String, PathBuf)> {
    let (name, path) = spec.split_once('=').with_context(|| {
        format!("--binary {spec:?}: give NAME=PATH (e.g. base=./old/x402-facilitator)")
    })?;
    let name = name.trim();
    if name.is_empty()
        || name.len() > 32
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
    {
        bail!("--binary {spec:?}: NAME must be 1 to 32 letters, digits or -_.+");
    }
    let path = PathBuf::from(path);
    if !path.is_file() {
        bail!("--binary {spec:?}: {} is not a file", path.display());
    }
    Ok((name.to_owned(), path))
}

/// What the child is told beyond its chain: the bench's settlement and mirror options (a
/// build that does not know a key ignores it).
pub struct ChildOptions<'a> {
    pub rpc_url: &'a str,
    pub usdc: Address,
    pub keys: &'a [PrivateKeySigner],
    /// `None`: the build's own default.
    pub batch_max: Option<usize>,
    pub batch_window_ms: Option<u64>,
    pub mirror: Option<bool>,
}

pub struct ChildFacilitator {
    pub target: Target,
    child: Child,
    log: PathBuf,
}

impl ChildFacilitator {
    pub async fn start(
        name: &str,
        binary: &Path,
        dir: &Path,
        opts: ChildOptions<'_>,
    ) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("no free port")?
            .port();
        let keys_file = dir.join(format!("{name}.keys"));
        let keys: Vec<String> = opts
            .keys
            .iter()
            .map(|k| format!("0x{}", alloy::hex::encode(k.to_bytes())))
            .collect();
        crate::dev::write_private(&keys_file, (keys.join("\n") + "\n").as_bytes())?;
        let mut settlement = serde_json::Map::new();
        if let Some(max) = opts.batch_max {
            settlement.insert("batch_max".into(), max.into());
        }
        if let Some(ms) = opts.batch_window_ms {
            settlement.insert("batch_window_ms".into(), ms.into());
        }
        let mut config = json!({
            "environment": "development",
            "server": { "host": "127.0.0.1", "port": port },
            "database": {
                "url": format!("sqlite://{}?mode=rwc", dir.join(format!("{name}.sqlite")).display()),
                "durable_commits": true,
            },
            "log": { "level": "warn", "format": "json" },
            "settlement": settlement,
            "networks": { "base_sepolia": {
                "rpc_url": opts.rpc_url,
                "usdc_address": opts.usdc.to_checksum(None),
                "signer_keys_file": keys_file,
                "receipt_timeout_secs": 20,
                // As ours in this process (`dev`): the local chain mines every second.
                "replace_after_secs": 3,
            } },
        });
        if let Some(on) = opts.mirror {
            config["verify"] = json!({ "mirror": on });
        }
        // JSON is YAML: the child reads it as its config.yaml.
        let config_file = dir.join(format!("{name}.yaml"));
        std::fs::write(&config_file, serde_json::to_string_pretty(&config)?)
            .context("cannot write the child's configuration")?;
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).context("cannot create the child's log")?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .arg("--config")
            .arg(&config_file)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .env_remove("RUST_LOG");
        // Our own environment must not configure it.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("APP__") {
                command.env_remove(k);
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut this = Self {
            target: Target {
                name: name.to_owned(),
                url: format!("http://127.0.0.1:{port}/api/v1"),
                headers: HeaderMap::new(),
            },
            child,
            log,
        };
        match this.ready(port).await {
            Ok(headers) => {
                this.target.headers = headers;
                Ok(this)
            }
            Err(e) => {
                let tail = this.log_tail();
                this.stop();
                Err(e.context(format!(
                    "{name} ({}) did not start:\n{tail}",
                    binary.display()
                )))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until `/ready` answers 200 (the process still running), then make a client key.
    async fn ready(&mut self, port: u16) -> anyhow::Result<HeaderMap> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()?;
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            if let Some(status) = self.child.try_wait()? {
                bail!("it exited ({status})");
            }
            if let Ok(r) = http.get(format!("{base}/ready")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("not ready after 60 s");
            }
        }
        let email = "bench@example.com";
        let password = format!("bench-{}", alloy::hex::encode(rand::random::<[u8; 12]>()));
        let creds = json!({ "email": email, "password": password });
        call(&http, &base, "/api/v1/signup", creds.clone(), None).await?;
        let login = call(&http, &base, "/api/v1/login", creds, None).await?;
        let access = login["data"]["access_token"]
            .as_str()
            .context("/api/v1/login answered no access_token")?
            .to_owned();
        let created = call(
            &http,
            &base,
            "/api/v1/clients",
            json!({ "title": "bench" }),
            Some(access),
        )
        .await?;
        let client = &created["data"]["client"];
        let (Some(id), Some(token)) = (client["clientId"].as_str(), client["token"].as_str())
        else {
            bail!("/api/v1/clients answered no clientId and token");
        };
        let mut headers = HeaderMap::new();
        headers.insert("X-Client-ID", HeaderValue::from_str(id)?);
        let mut token = HeaderValue::from_str(token)?;
        token.set_sensitive(true);
        headers.insert("X-Client-Token", token);
        Ok(headers)
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }

    /// SIGTERM (a graceful shutdown, as an operator's), then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(10));
    }
}

/// Stop a child: SIGTERM, then SIGKILL if it is still running after `grace`; reaped either way.
pub(super) fn terminate(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
    }
    let _ = child.wait();
}

impl Drop for ChildFacilitator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// POST a JSON body (with a bearer token), require 2xx, parse the JSON answer.
async fn call(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: Value,
    bearer: Option<String>,
) -> anyhow::Result<Value> {
    let mut req = http.post(format!("{base}{path}")).json(&body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let res = req.send().await?;
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "{path}: HTTP {}: {}",
            status.as_u16(),
            text.chars().take(300).collect::<String>()
        );
    }
    serde_json::from_str::<Value>(&text).with_context(|| format!("{path}: not JSON"))
}
