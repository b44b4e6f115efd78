//! `x402-dev`: the whole thing on one machine, for trying it and for the official
//! clients' end-to-end tests. Starts a local anvil standing in for `base-sepolia`
//! (chain id 84532), deploys Circle's real USDC (FiatTokenV2_2, EIP-712 name "USDC", version
//! "2"), funds demo payers, serves on a fresh SQLite file with a dev user and client key, and
//! writes everything a client needs to `--state-file`.
//!
//! Beside it, a local Solana cluster (`devnet::solana`, the `surfnet` runner) served as Solana
//! devnet, with a USDC-like mint, funded demo payers and a payee with a token account: the
//! `solana` section of the state file. Without the runner (`scripts/build-surfnet.sh`) dev
//! serves EVM only and says so.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use devnet::solana::{Keypair, Signer as _, SolanaCluster, SolanaClusterOptions};
use devnet::{Devnet, DevnetOptions};
use figment::providers::Serialized;
use secrecy::ExposeSecret;
use serde_json::json;

use facilitator_actors::svm::FeePayer;
use x402_facilitator::config::{Settings, SvmAssetSettings, SvmNetworkSettings};
use x402_facilitator::startup::{Application, BuildOptions};

pub const DEV_EMAIL: &str = "dev@x402.local";
pub const DEV_PASSWORD: &str = "dev-password-not-secret";

pub struct DevOptions {
    pub config: PathBuf,
    pub state_file: Option<PathBuf>,
}

pub async fn run(opts: DevOptions) -> anyhow::Result<()> {
    let devnet = Devnet::start(DevnetOptions {
        block_time: Some(1),
        // As on real chains: `settlement.batch_max` sends through Multicall3.
        multicall3: true,
        ..DevnetOptions::default()
    })
    .await
    .context("cannot start the local chain (run scripts/install-tools.sh first)")?;
    let solana = match start_solana().await {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("Solana: not served: {e:#}");
            None
        }
    };
    let result = serve(&devnet, solana.as_ref(), opts).await;
    devnet.stop().await;
    if let Some(s) = solana {
        s.cluster.stop().await;
    }
    result
}

/// The local Solana cluster of `dev`, and a payee (a resource server's `payTo`) whose token
/// account exists: the official buyer does not create it.
pub struct DevSolana {
    pub cluster: SolanaCluster,
    pub pay_to: Keypair,
}

pub async fn start_solana() -> anyhow::Result<DevSolana> {
    let cluster = SolanaCluster::start_with(SolanaClusterOptions::default()).await?;
    let pay_to = Keypair::new();
    cluster.create_token_accounts(&pay_to.pubkey()).await?;
    Ok(DevSolana { cluster, pay_to })
}

impl DevSolana {
    /// The `solana` section of `dev-state.json` (see `SolanaCluster::dev_state`) with `payTo`.
    pub fn state(&self) -> serde_json::Value {
        let mut state = self.cluster.dev_state();
        state["payTo"] = json!(self.pay_to.pubkey().to_string());
        state
    }
}

/// Our facilitator as `dev` and `bench` run it: a fresh SQLite file in `dir`, only
/// `base-sepolia` served, on `rpc_url` with the token at `usdc`, settling with `signers`, and a
/// dev user (admin) with one `verify,settle` client key.
pub struct LocalFacilitator {
    pub app: Application,
    pub client_id: String,
    pub client_token: secrecy::SecretString,
}

/// `overrides`: configuration keys set over the file's (e.g. `server.port`).
pub async fn local_facilitator(
    config: &Path,
    overrides: serde_json::Value,
    dir: &Path,
    rpc_url: &str,
    usdc: alloy::primitives::Address,
    signers: Vec<alloy::signers::local::PrivateKeySigner>,
) -> anyhow::Result<LocalFacilitator> {
    local_facilitator_with_solana(config, overrides, dir, rpc_url, usdc, signers, None).await
}

/// [`local_facilitator`], also serving `solana` (when given) as `solana-devnet`: its RPC, both
/// its mints, its fee payers; nothing else of `svm_networks` is.
pub async fn local_facilitator_with_solana(
    config: &Path,
    overrides: serde_json::Value,
    dir: &Path,
    rpc_url: &str,
    usdc: alloy::primitives::Address,
    signers: Vec<alloy::signers::local::PrivateKeySigner>,
    solana: Option<&SolanaCluster>,
) -> anyhow::Result<LocalFacilitator> {
    let evm = LocalEvm {
        rpc_url,
        usdc,
        signers,
    };
    let svm = solana.map(|cluster| LocalSvm {
        cluster,
        fee_payers: &cluster.fee_payers,
    });
    local_facilitator_on(config, overrides, dir, Some(evm), svm).await
}

/// The EVM chain a local facilitator serves as `base-sepolia`: its node, its USDC, the keys
/// it settles with.
pub struct LocalEvm<'a> {
    pub rpc_url: &'a str,
    pub usdc: alloy::primitives::Address,
    pub signers: Vec<alloy::signers::local::PrivateKeySigner>,
}

/// The Solana cluster a local facilitator serves as `solana-devnet` (its RPC, both its mints),
/// paying fees with `fee_payers`.
pub struct LocalSvm<'a> {
    pub cluster: &'a SolanaCluster,
    pub fee_payers: &'a [Keypair],
}

/// Our facilitator on a fresh SQLite file in `dir`, serving the chains given and no other,
/// with a dev user (admin) and one `verify,settle` client key.
pub async fn local_facilitator_on(
    config: &Path,
    overrides: serde_json::Value,
    dir: &Path,
    evm: Option<LocalEvm<'_>>,
    svm: Option<LocalSvm<'_>>,
) -> anyhow::Result<LocalFacilitator> {
    let db_path = dir.join("dev.sqlite");
    let settings: Settings = Settings::figment(config)
        .merge(Serialized::defaults(json!({
            "database": { "url": format!("sqlite://{}?mode=rwc", db_path.display()) },
        })))
        .merge(Serialized::defaults(overrides))
        .extract()
        .context("configuration")?;
    // Only the local chains are served.
    let mut settings = settings;
    settings.networks.retain(|k, _| k == "base_sepolia");
    let mut options = BuildOptions::default();
    match evm {
        Some(evm) => {
            let base = settings.networks.entry("base_sepolia".into()).or_default();
            base.rpc_url = Some(evm.rpc_url.to_owned().into());
            base.usdc_address = Some(evm.usdc.to_checksum(None));
            base.receipt_timeout_secs = Some(20);
            // Blocks come every second: a settlement still unmined after three of them is
            // replaced (anvil can leave a ready transaction out of its blocks,
            // foundry-rs/foundry#10122, and every later nonce of that signer would wait
            // behind it).
            base.replace_after_secs.get_or_insert(3);
            options
                .signer_keys
                .insert("base-sepolia".into(), evm.signers);
        }
        None => settings.networks.clear(),
    }
    settings.svm_networks.clear();
    if let Some(LocalSvm {
        cluster,
        fee_payers,
    }) = svm
    {
        let asset = |m: &devnet::solana::Mint| SvmAssetSettings {
            mint: m.address.to_string(),
            symbol: Some("USDC".into()),
            decimals: m.decimals,
            token_program: Some(m.token_program.to_string()),
            min_amount: None,
        };
        settings.svm_networks.insert(
            "solana_devnet".into(),
            SvmNetworkSettings {
                rpc_url: Some(cluster.rpc_url.clone().into()),
                // The local cluster has its own genesis hash, not devnet's.
                check_genesis: Some(false),
                assets: vec![asset(&cluster.usdc), asset(&cluster.usdc_2022)],
                confirm_timeout_secs: Some(20),
                ..SvmNetworkSettings::default()
            },
        );
        options.svm_fee_payers.insert(
            "solana-devnet".into(),
            fee_payers
                .iter()
                .map(|k| FeePayer::new(k.insecure_clone()))
                .collect(),
        );
    }
    let app = Application::build_with(settings, options).await?;
    let state = app.state();
    let user = state
        .auth
        .signup(DEV_EMAIL, DEV_PASSWORD, true, None)
        .await?;
    let client = state
        .auth
        .create_client(
            &facilitator_actors::auth::AuthUser {
                id: user.id,
                is_admin: true,
            },
            "dev",
            None,
            None,
            None,
        )
        .await?;
    Ok(LocalFacilitator {
        app,
        client_id: client.view.client_id,
        client_token: client.token,
    })
}

async fn serve(
    devnet: &Devnet,
    solana: Option<&DevSolana>,
    opts: DevOptions,
) -> anyhow::Result<()> {
    // A fresh database per run: the chain is fresh too, and an old ledger would not match it.
    let dir = tempfile::tempdir().context("temp dir")?;
    let LocalFacilitator {
        app,
        client_id,
        client_token,
    } = local_facilitator_with_solana(
        &opts.config,
        json!({}),
        dir.path(),
        &devnet.rpc_url,
        devnet.usdc,
        devnet.facilitator_keys.clone(),
        solana.map(|s| &s.cluster),
    )
    .await?;
    let state = app.state();
    let facilitator_url = format!("http://127.0.0.1:{}/api/v1", app.port());
    let payer_keys: Vec<String> = devnet
        .payers
        .iter()
        .map(|p| format!("0x{}", alloy::hex::encode(p.to_bytes())))
        .collect();
    let mut dev_state = json!({
        "facilitatorUrl": facilitator_url,
        "clientId": client_id,
        "clientToken": client_token.expose_secret(),
        "adminToken": state.admin_token.expose_secret(),
        "network": "base-sepolia",
        "caip2": "eip155:84532",
        "chainId": devnet.chain_id,
        "rpcUrl": devnet.rpc_url,
        "asset": devnet.usdc.to_checksum(None),
        "payerPrivateKeys": payer_keys,
        "payers": devnet.payers.iter().map(|p| p.address().to_checksum(None)).collect::<Vec<_>>(),
        "devUser": { "email": DEV_EMAIL, "password": DEV_PASSWORD },
    });
    if let Some(s) = solana {
        dev_state["solana"] = s.state();
    }
    if let Some(path) = &opts.state_file {
        write_private(path, &serde_json::to_vec_pretty(&dev_state)?)?;
    }
    println!(
        "\nx402 facilitator (dev) ready\n  facilitator: {facilitator_url}\n  chain:       {} (chain id {}, served as base-sepolia / eip155:84532)\n  USDC:        {}\n  solana:      {}\n  client key:  X-Client-ID: {}\n{}",
        devnet.rpc_url,
        devnet.chain_id,
        devnet.usdc,
        match solana {
            Some(s) => format!(
                "{} (served as {}), mint {}",
                s.cluster.rpc_url,
                devnet::solana::DEVNET_NETWORK,
                s.cluster.usdc.address
            ),
            None => "not served (scripts/build-surfnet.sh builds its runner)".into(),
        },
        client_id,
        match &opts.state_file {
            Some(p) => format!(
                "  state file:  {} (client token, admin token, payer keys)\n\nPay through it with the official x402 clients:\n  node tools/examples/pay.mjs {}\n",
                p.display(),
                p.display()
            ),
            None => "\nRun with --state-file dev-state.json to get the client token and payer keys.\n".into(),
        }
    );
    app.run_until_stopped().await?;
    Ok(())
}

/// Write a file only its owner can read (it holds tokens and keys).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    open.mode(0o600);
    let mut f = open
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    // Appear at once, complete: readers poll for this file.
    std::fs::rename(&tmp, path)?;
    Ok(())
}
