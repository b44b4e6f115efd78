//! Self-contained mode: a local anvil with Circle's USDC (the `devnet` crate), our facilitator
//! in this process on a fresh SQLite file (as `dev` runs it), optionally the TypeScript reference
//! facilitator on the same chain, and optionally a delaying proxy between the facilitators and
//! the node. The bench's own chain reads go to the node directly.

use std::path::Path;
use std::time::Duration;

use alloy::primitives::U256;
use anyhow::{bail, Context as _};
use devnet::{Devnet, DevnetOptions};
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::ExposeSecret;

use super::binary::{ChildFacilitator, ChildOptions};
use super::engine::Target;
use super::proxy::DelayProxy;
use super::reference::ReferenceFacilitator;
use super::{BenchArgs, MirrorMode, Scheme};
use crate::dev::{local_facilitator, LocalFacilitator};

/// Loopback, any free port (never a fixed one), and the database asked for; the state mirror
/// and batching as given (`None`: the configuration's).
pub(crate) fn overrides(
    args: &BenchArgs,
    mirror: Option<bool>,
    batch_max: Option<usize>,
) -> serde_json::Value {
    let mut v = serde_json::json!({ "server": { "host": "127.0.0.1", "port": 0 } });
    if let Some(url) = &args.database_url {
        v["database"] = serde_json::json!({ "url": url });
    }
    let mut settlement = serde_json::Map::new();
    if let Some(max) = batch_max {
        settlement.insert("batch_max".into(), max.into());
    }
    if let Some(ms) = args.batch_window_ms {
        settlement.insert("batch_window_ms".into(), ms.into());
    }
    if args.scheme == Scheme::BatchSettlement {
        // Payment channels are a preview, off by default.
        settlement.insert("channels".into(), true.into());
    }
    v["settlement"] = settlement.into();
    if let Some(on) = mirror {
        v["verify"] = serde_json::json!({ "mirror": on });
    }
    v
}

/// `--mirror` as the configuration key (`None`: not given, the configuration's).
fn mirror_of(args: &BenchArgs) -> Option<bool> {
    args.mirror.map(|m| m != MirrorMode::Off)
}

/// One of our facilitators, serving in this process.
pub(crate) struct Ours {
    pub target: Target,
    server: actix_web::dev::ServerHandle,
    task: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
}

impl Ours {
    async fn start(
        name: &str,
        config: &Path,
        overrides: serde_json::Value,
        dir: &Path,
        rpc_url: &str,
        devnet: &Devnet,
        signers: Vec<alloy::signers::local::PrivateKeySigner>,
    ) -> anyhow::Result<Self> {
        let facilitator =
            local_facilitator(config, overrides, dir, rpc_url, devnet.usdc, signers).await?;
        Self::serve(name, facilitator)
    }

    /// Serve `facilitator` in this process, measured as `name` with its client key.
    pub(crate) fn serve(name: &str, facilitator: LocalFacilitator) -> anyhow::Result<Self> {
        let LocalFacilitator {
            app,
            client_id,
            client_token,
        } = facilitator;
        let mut headers = HeaderMap::new();
        headers.insert("X-Client-ID", HeaderValue::from_str(&client_id)?);
        let mut token = HeaderValue::from_str(client_token.expose_secret())?;
        token.set_sensitive(true);
        headers.insert("X-Client-Token", token);
        let target = Target {
            name: name.into(),
            url: format!("http://127.0.0.1:{}/api/v1", app.port()),
            headers,
        };
        let server = app.server_handle();
        let task = actix_web::rt::spawn(app.run_until_stopped());
        Ok(Self {
            target,
            server,
            task,
        })
    }

    pub(crate) async fn stop(self) {
        self.server.stop(true).await;
        let _ = self.task.await;
    }
}

pub struct Local {
    pub devnet: Devnet,
    pub ours: Target,
    pub reference: Option<(Target, ReferenceFacilitator)>,
    /// `--mirror both`: ours without the mirror (`ours` has it); `--compare-unbatched`: ours
    /// with batching off.
    pub variants: Vec<Target>,
    /// `--binary`: other builds, as child processes.
    pub children: Vec<ChildFacilitator>,
    /// The URL the facilitators use for the node (the proxy's, with --rpc-latency).
    pub facilitator_rpc_url: String,
    servers: Vec<Ours>,
    _proxy: Option<DelayProxy>,
    _dir: tempfile::TempDir,
}

impl Local {
    /// `needed_each`: what each payer spends over the whole bench.
    pub async fn start(args: &BenchArgs, config: &Path, needed_each: U256) -> anyhow::Result<Self> {
        let signers = args.signers as usize;
        let binaries = args
            .binaries
            .iter()
            .map(|b| super::binary::parse(b))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if binaries.len() > 3 {
            bail!("--binary: at most 3 other builds");
        }
        // Signer keys never shared: four for each facilitator (ours, ours without the
        // mirror, the reference, each --binary).
        let slot = |k: usize| 4 * k..4 * k + signers;
        let devnet = Devnet::start(DevnetOptions {
            token_name: args.asset_name.clone(),
            payers: args.payers as usize,
            payer_balance: needed_each.max(DevnetOptions::default().payer_balance),
            block_time: Some(1),
            gas_limit: Some(args.block_gas_limit),
            // As on real chains (batching is on by default).
            multicall3: true,
            batch_settlement: args.scheme == Scheme::BatchSettlement,
            facilitator_keys: 4 * (3 + binaries.len()),
            ..DevnetOptions::default()
        })
        .await
        .context("cannot start the local chain (run scripts/install-tools.sh first)")?;
        if args.asset_version != "2" {
            bail!("the local USDC's EIP-712 version is \"2\": drop --asset-version");
        }

        let proxy = match args.rpc_latency {
            Some(ms) => {
                let upstream = devnet.rpc_url.trim_start_matches("http://").to_owned();
                Some(DelayProxy::start(upstream, Duration::from_millis(ms)).await?)
            }
            None => None,
        };
        let facilitator_rpc_url = proxy
            .as_ref()
            .map_or_else(|| devnet.rpc_url.clone(), |p| p.url.clone());

        let dir = tempfile::tempdir().context("temp dir")?;
        let both = args.mirror == Some(MirrorMode::Both);
        if both && args.mode.settles() {
            bail!("--mirror both measures verify only: use --mode verify");
        }
        if args.compare_unbatched && !args.mode.settles() {
            bail!("--compare-unbatched measures settles: use --mode settle or pay");
        }
        let mut servers = vec![
            Ours::start(
                if both { "ours+mirror" } else { "ours" },
                config,
                overrides(args, mirror_of(args), args.batch_max),
                dir.path(),
                &facilitator_rpc_url,
                &devnet,
                devnet.facilitator_keys[slot(0)].to_vec(),
            )
            .await?,
        ];
        if both {
            let second = dir.path().join("without-mirror");
            std::fs::create_dir_all(&second).context("temp dir")?;
            servers.push(
                Ours::start(
                    "ours",
                    config,
                    overrides(args, Some(false), args.batch_max),
                    &second,
                    &facilitator_rpc_url,
                    &devnet,
                    devnet.facilitator_keys[slot(1)].to_vec(),
                )
                .await?,
            );
        } else if args.compare_unbatched {
            let second = dir.path().join("unbatched");
            std::fs::create_dir_all(&second).context("temp dir")?;
            servers.push(
                Ours::start(
                    "ours-unbatched",
                    config,
                    overrides(args, mirror_of(args), Some(0)),
                    &second,
                    &facilitator_rpc_url,
                    &devnet,
                    devnet.facilitator_keys[slot(1)].to_vec(),
                )
                .await?,
            );
        }
        let ours = servers[0].target.clone();
        let variants: Vec<Target> = servers[1..].iter().map(|s| s.target.clone()).collect();

        let reference = if args.compare_reference {
            let key = devnet.facilitator_keys[slot(2).start].clone();
            let (url, chain_id) = (facilitator_rpc_url.clone(), devnet.chain_id);
            let channels = args.scheme == Scheme::BatchSettlement;
            Some(
                ReferenceFacilitator::target(move || {
                    ReferenceFacilitator::start_evm(&url, chain_id, &key, channels)
                })
                .await?,
            )
        } else {
            None
        };
        let mut children = Vec::new();
        for (i, (name, path)) in binaries.iter().enumerate() {
            if [ours.name.as_str(), "reference"].contains(&name.as_str())
                || variants.iter().any(|t| &t.name == name)
                || children
                    .iter()
                    .any(|c: &ChildFacilitator| &c.target.name == name)
            {
                bail!("--binary {name}=…: that name is taken");
            }
            let own = dir.path().join(name);
            std::fs::create_dir_all(&own).context("temp dir")?;
            children.push(
                ChildFacilitator::start(
                    name,
                    path,
                    &own,
                    ChildOptions {
                        rpc_url: &facilitator_rpc_url,
                        usdc: devnet.usdc,
                        keys: &devnet.facilitator_keys[slot(3 + i)],
                        batch_max: args.batch_max,
                        batch_window_ms: args.batch_window_ms,
                        mirror: args.mirror.map(|m| m == MirrorMode::On),
                    },
                )
                .await?,
            );
        }
        Ok(Self {
            devnet,
            ours,
            reference,
            variants,
            children,
            facilitator_rpc_url,
            servers,
            _proxy: proxy,
            _dir: dir,
        })
    }

    /// Stop the facilitators, then the chain.
    pub async fn stop(self) {
        drop(self.reference);
        drop(self.children);
        for ours in self.servers {
            ours.stop().await;
        }
        self.devnet.stop().await;
    }
}
