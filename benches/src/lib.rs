//! `x402-bench`: load-benchmarks any x402 facilitator (ours or not) over its HTTP API, and
//! checks every answer against the chain. And `x402-dev` (`dev`): our facilitator on a local
//! chain, for trying it. Both are tools beside the facilitator: it links none of this crate
//! (charts, progress bar, HDR histograms, the local chain and the processes they start).
//!
//! A bench flows: resolve the chain (self-contained `local`, or the node, network, asset and
//! buyer keys given) -> pre-flight checks read from the node (`chain`: chain id, the token's
//! EIP-712 domain, buyers' balances) and from each facilitator (`/supported`) -> per target:
//! a fresh payee, payments signed up front (`payments`), the load loop (`engine`, with a
//! progress bar), figures (`stats`), the chain's verdict (`chain::Chain::verdict`) -> the
//! terminal summary, `report.json` and `report.html` (`report`, `charts`). The outcome
//! passes only when every request succeeded and the chain agrees with every answer.

mod args;
mod binary;
mod chain;
mod channels;
mod channels_chain;
mod charts;
mod console;
pub mod dev;
mod engine;
mod local;
mod memory;
mod payments;
mod proxy;
pub mod reference;
mod report;
mod stats;
mod supported;
mod svm;
mod svm_chain;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use anyhow::{bail, Context as _};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

pub use args::{BenchArgs, Family, MirrorMode, Mode, Scheme};
pub use local::Local;
pub use report::{Report, RunReport};
pub use svm::SvmLocal;

use chain::Chain;
use engine::{Loop, Target, Workload};
use payments::Terms;
use supported::probe;

/// What a bench did. `local` (self-contained mode) still runs: read its chain, then
/// [`Outcome::shutdown`].
pub struct Outcome {
    pub report: Report,
    pub local: Option<Local>,
    /// `--family svm`: the local cluster and the facilitators on it.
    pub svm: Option<SvmLocal>,
}

impl Outcome {
    /// Every run passed: no failed request, and the chain agrees.
    pub fn passed(&self) -> bool {
        self.report.passed
    }

    pub async fn shutdown(self) {
        if let Some(local) = self.local {
            local.stop().await;
        }
        if let Some(svm) = self.svm {
            svm.stop().await;
        }
    }
}

/// The network as both protocol versions name it.
struct NetworkNames {
    v1: Option<String>,
    caip2: String,
    chain_id: u64,
    usdc: Option<Address>,
}

fn network_names(s: &str) -> anyhow::Result<NetworkNames> {
    if let Some(n) = x402::network::parse_network(s) {
        return Ok(NetworkNames {
            v1: Some(n.v1_name.to_owned()),
            caip2: n.caip2.to_owned(),
            chain_id: n.chain_id,
            usdc: n.usdc.map(|a| a.address),
        });
    }
    let chain_id = s
        .strip_prefix("eip155:")
        .and_then(|id| id.parse().ok())
        .with_context(|| {
            format!("unknown network {s:?}: give an x402 v1 name (base-sepolia) or CAIP-2 (eip155:84532)")
        })?;
    Ok(NetworkNames {
        v1: None,
        caip2: s.to_owned(),
        chain_id,
        usdc: None,
    })
}

fn parse_headers(lines: &[String], flag: &str) -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .with_context(|| format!("{flag} must look like 'Name: value'"))?;
        let name = HeaderName::from_bytes(k.trim().as_bytes())
            .with_context(|| format!("{flag}: {:?} is not a header name", k.trim()))?;
        let mut value = HeaderValue::from_str(v.trim()).with_context(|| {
            format!("{flag} {}: the value is not a valid header value", k.trim())
        })?;
        value.set_sensitive(true);
        map.append(name, value);
    }
    Ok(map)
}

/// The command line with header values hidden (they carry client tokens).
fn redacted_argv(argv: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut hide_next = false;
    for a in argv {
        let redact = |h: &str| match h.split_once(':') {
            Some((k, _)) => format!("{k}: <redacted>"),
            None => "<redacted>".into(),
        };
        if hide_next {
            out.push(redact(&a));
            hide_next = false;
            continue;
        }
        if a == "--header" || a == "-H" || a == "--compare-header" {
            hide_next = true;
            out.push(a);
        } else if let Some(v) = a
            .strip_prefix("--header=")
            .or_else(|| a.strip_prefix("--compare-header="))
        {
            let flag = &a[..a.len() - v.len()];
            out.push(format!("{flag}{}", redact(v)));
        } else {
            out.push(a);
        }
    }
    out
}

fn read_keys(path: &Path) -> anyhow::Result<Vec<PrivateKeySigner>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --payer-keys-file {}", path.display()))?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .enumerate()
        // The error names the line, never the key.
        .map(|(i, l)| {
            l.parse::<PrivateKeySigner>().map_err(|_| {
                anyhow::anyhow!(
                    "{} line {}: not a private key (one 0x-hex key per line)",
                    path.display(),
                    i + 1
                )
            })
        })
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Everything a run needs that does not change between targets.
struct Setup {
    chain: Chain,
    names: NetworkNames,
    asset_name: String,
    asset_version: String,
    payers: Vec<PrivateKeySigner>,
    targets: Vec<Target>,
    /// Targets that are child processes (`--binary`), by name: their memory is read.
    pids: std::collections::HashMap<String, u32>,
}

fn load_state(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --state {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// Self-contained: the local chain and every facilitator started on it.
async fn local_setup(args: &BenchArgs, local: &Local) -> anyhow::Result<Setup> {
    let chain = Chain::connect(&local.devnet.rpc_url, local.devnet.usdc).await?;
    let mut targets = vec![local.ours.clone()];
    if let Some((t, _)) = &local.reference {
        targets.push(t.clone());
    }
    targets.extend(local.variants.iter().cloned());
    targets.extend(local.children.iter().map(|c| c.target.clone()));
    let pids = local
        .children
        .iter()
        .map(|c| (c.target.name.clone(), c.pid()))
        .collect();
    Ok(Setup {
        chain,
        names: network_names("base-sepolia")?,
        asset_name: args.asset_name.clone(),
        asset_version: args.asset_version.clone(),
        payers: local.devnet.payers.clone(),
        targets,
        pids,
    })
}

/// Given chain and facilitator(s): from the flags, completed by `--state`.
async fn remote_setup(args: &BenchArgs) -> anyhow::Result<Setup> {
    let state = args.state.as_deref().map(load_state).transpose()?;
    let from_state = |key: &str| -> Option<String> {
        state
            .as_ref()
            .and_then(|s| s[key].as_str())
            .map(str::to_owned)
    };
    let rpc_url = args
        .rpc_url
        .clone()
        .or_else(|| from_state("rpcUrl"))
        .context("--rpc-url is required with --facilitator (or --state FILE)")?;
    let network = args
        .network
        .clone()
        .or_else(|| from_state("network"))
        .context("--network is required with --facilitator (or --state FILE)")?;
    let names = network_names(&network)?;
    let asset = match args.asset {
        Some(a) => a,
        None => match from_state("asset") {
            Some(a) => a
                .parse()
                .with_context(|| format!("asset {a:?} in the state file"))?,
            None => names
                .usdc
                .with_context(|| format!("--asset is required for {network}"))?,
        },
    };
    let mut payers = match &args.payer_keys_file {
        Some(path) => read_keys(path)?,
        None => state
            .as_ref()
            .and_then(|s| s["payerPrivateKeys"].as_array())
            .map(|keys| {
                keys.iter()
                    .filter_map(Value::as_str)
                    .map(|k| {
                        k.parse::<PrivateKeySigner>().map_err(|_| {
                            anyhow::anyhow!("a payer key in the state file is not a key")
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .transpose()?
            .context("--payer-keys-file is required with --facilitator (or --state FILE)")?,
    };
    if payers.is_empty() {
        bail!("no payer keys given");
    }
    payers.truncate(args.payers as usize);

    let (url, headers) = match (&args.facilitator, from_state("facilitatorUrl")) {
        (Some(url), _) => (url.clone(), parse_headers(&args.headers, "--header")?),
        (None, Some(url)) => {
            let mut h = parse_headers(&args.headers, "--header")?;
            if let (Some(id), Some(token)) = (from_state("clientId"), from_state("clientToken")) {
                h.insert("X-Client-ID", HeaderValue::from_str(&id)?);
                let mut t = HeaderValue::from_str(&token)?;
                t.set_sensitive(true);
                h.insert("X-Client-Token", t);
            }
            (url, h)
        }
        (None, None) => bail!("--facilitator is required (the state file names none)"),
    };
    let mut targets = vec![Target {
        name: host_label(&url, "first"),
        url,
        headers,
    }];
    if let Some(url) = &args.compare {
        targets.push(Target {
            name: host_label(url, "second"),
            url: url.clone(),
            headers: parse_headers(&args.compare_headers, "--compare-header")?,
        });
    }
    if targets.len() == 2 && targets[0].name == targets[1].name {
        targets[0].name = "first".into();
        targets[1].name = "second".into();
    }
    let chain = Chain::connect(&rpc_url, asset).await?;
    Ok(Setup {
        chain,
        names,
        asset_name: args.asset_name.clone(),
        asset_version: args.asset_version.clone(),
        payers,
        targets,
        pids: Default::default(),
    })
}

/// `host:port` of a URL, for tables.
fn host_label(url: &str, fallback: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(0)))
        })
        .unwrap_or_else(|| fallback.to_owned())
}

fn workload(args: &BenchArgs) -> anyhow::Result<(Workload, usize)> {
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of requests per second");
        }
    }
    if let Some(d) = args.duration {
        if !(d.is_finite() && d > 0.0) {
            bail!("--duration must be a positive number of seconds");
        }
    }
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    let count = match (args.count, args.rate, args.duration) {
        (Some(n), _, _) => n as usize,
        (None, Some(rate), Some(d)) => ((rate * d).ceil() as usize).max(1),
        _ => 100,
    };
    let looping = match args.rate {
        Some(rate) => Loop::Open { rate },
        None => Loop::Closed {
            concurrency: args.concurrency as usize,
        },
    };
    Ok((
        Workload {
            mode: args.mode,
            looping,
            duration: args.duration.map(Duration::from_secs_f64),
            timeout: Duration::from_secs_f64(args.timeout),
        },
        count,
    ))
}

/// Run the bench. `config` is the configuration our facilitator uses in self-contained mode.
pub async fn run(args: BenchArgs, config: &Path) -> anyhow::Result<Outcome> {
    if args.family == Family::Svm {
        return svm::run(args, config).await;
    }
    if args.scheme == Scheme::BatchSettlement {
        return channels::run(args, config).await;
    }
    let (workload, count) = workload(&args)?;
    let self_contained = args.self_contained();
    if !self_contained {
        for (set, flag) in [
            (args.rpc_latency.is_some(), "--rpc-latency"),
            (args.compare_reference, "--compare-reference"),
            (args.database_url.is_some(), "--database-url"),
            (args.block_gas_limit != 300_000_000, "--block-gas-limit"),
            (args.mirror.is_some(), "--mirror"),
            (args.batch_max.is_some(), "--batch-max"),
            (args.compare_unbatched, "--compare-unbatched"),
            (!args.binaries.is_empty(), "--binary"),
        ] {
            if set {
                bail!(
                    "{flag} works only in self-contained mode (without --facilitator or --state)"
                );
            }
        }
    } else if args.compare.is_some() {
        bail!(
            "--compare needs --facilitator: both facilitators must settle on one chain the bench can read \
             (self-contained: use --compare-reference)"
        );
    }
    let runs = 1
        + usize::from(args.compare.is_some() || args.compare_reference)
        + usize::from(args.mirror == Some(MirrorMode::Both) || args.compare_unbatched)
        + args.binaries.len();
    let amount = U256::from(args.amount);
    let per_payer = |payers: usize| -> U256 {
        if args.mode.settles() {
            amount * U256::from((count * runs).div_ceil(payers))
        } else {
            amount
        }
    };

    let (setup, local) = if self_contained {
        let local = Local::start(&args, config, per_payer(args.payers as usize)).await?;
        let setup = match local_setup(&args, &local).await {
            Ok(setup) => setup,
            Err(e) => {
                local.stop().await;
                return Err(e);
            }
        };
        (setup, Some(local))
    } else {
        (remote_setup(&args).await?, None)
    };
    let result = bench(
        &args,
        &setup,
        workload,
        count,
        per_payer(setup.payers.len()),
    )
    .await;
    if self_contained {
        // Our facilitator runs in this process (with the load generator, which holds every
        // payment and answer of the run).
        if let Some((rss, peak)) = crate::memory::resident().map(megabytes) {
            eprintln!(
                "memory: this process (bench + our facilitator) RSS {rss:.1} MB, peak {peak:.1} MB"
            );
        }
    }
    match result {
        Ok(report) => Ok(Outcome {
            report,
            local,
            svm: None,
        }),
        Err(e) => {
            if let Some(local) = local {
                local.stop().await;
            }
            Err(e)
        }
    }
}

/// Bytes as MB.
fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// (resident, peak) bytes as MB.
fn megabytes((rss, peak): (u64, u64)) -> (f64, f64) {
    (mb(rss), mb(peak))
}

async fn bench(
    args: &BenchArgs,
    setup: &Setup,
    workload: Workload,
    count: usize,
    per_payer: U256,
) -> anyhow::Result<Report> {
    let chain = &setup.chain;
    let names = &setup.names;
    if chain.chain_id != names.chain_id {
        bail!(
            "--network {} is chain id {}, but the node at {} is chain {}",
            names.caip2,
            names.chain_id,
            chain.rpc_url,
            chain.chain_id
        );
    }
    chain
        .check_asset(&setup.asset_name, &setup.asset_version)
        .await?;
    let payer_addresses: Vec<Address> = setup.payers.iter().map(|p| p.address()).collect();
    chain.check_funded(&payer_addresses, per_payer).await?;
    let network = match args.x402_version {
        1 => names.v1.clone().with_context(|| {
            format!("{} has no x402 v1 name: use --x402-version 2", names.caip2)
        })?,
        _ => names.caip2.clone(),
    };
    for t in &setup.targets {
        probe(t, &network, args.x402_version).await?;
    }

    let mut runs = Vec::new();
    for target in &setup.targets {
        let run = exact_run(args, setup, target, workload, count, target.name.clone()).await?;
        runs.push(run);
    }
    // Once every run is done: what each child holds idle, the run's burst behind it.
    for run in &mut runs {
        if let (Some(m), Some(&pid)) = (run.memory.as_mut(), setup.pids.get(&run.name)) {
            m.rss_mb_at_bench_end = crate::memory::resident_of(pid).map(|(rss, _)| mb(rss));
        }
    }
    conclude(
        args,
        workload,
        network,
        chain.asset.to_checksum(None),
        setup.payers.len(),
        count,
        runs,
    )
}

/// One target's `exact` run, reported as `name`: a fresh payee, `count` payments signed up
/// front, the load, the figures and the chain's verdict.
async fn exact_run(
    args: &BenchArgs,
    setup: &Setup,
    target: &Target,
    workload: Workload,
    count: usize,
    name: String,
) -> anyhow::Result<RunReport> {
    let (chain, names) = (&setup.chain, &setup.names);
    let valid_for = 3600 + args.duration.unwrap_or(0.0).ceil() as u64;
    println!(
        "bench: {name} ({}) — {} x {:?}, x402 v{}, {}",
        target.url,
        count,
        workload.mode,
        args.x402_version,
        console::describe_loop(workload.looping)
    );
    let payee = PrivateKeySigner::random().address();
    let payee_before = chain.balance(payee).await?;
    let now = now_secs();
    let terms = Terms {
        chain_id: chain.chain_id,
        v1_network: names.v1.clone(),
        caip2: names.caip2.clone(),
        asset: chain.asset,
        asset_name: setup.asset_name.clone(),
        asset_version: setup.asset_version.clone(),
        pay_to: payee,
        amount: U256::from(args.amount),
        x402_version: args.x402_version,
        valid_after: now.saturating_sub(600),
        valid_before: now + valid_for,
    };
    let payers = setup.payers.clone();
    let payments =
        actix_web::rt::task::spawn_blocking(move || terms.sign_all(&payers, count)).await??;
    let heads = workload.mode.settles().then(|| chain.watch_heads());
    let run = engine::run(target, workload, payments, name.clone()).await;
    let heads = heads.map(chain::Heads::stop);
    let (records, t0) = run?;
    let summary = stats::summarize(&records);
    let mut onchain = chain
        .verdict(
            payee,
            payee_before,
            U256::from(args.amount),
            workload.mode.settles(),
            &records,
        )
        .await?;
    onchain.latency_blocks_mean = heads.and_then(|h| chain::latency_blocks(&records, t0, &h));
    let mut run = RunReport::new(
        name,
        target.url.clone(),
        workload.mode,
        summary,
        onchain,
        &records,
    );
    if let Some(&pid) = setup.pids.get(&target.name) {
        if let Some((rss, peak)) = crate::memory::resident_of(pid).map(megabytes) {
            let settled = memory::settle(pid).await.map(mb);
            run.memory = Some(report::ProcessMemory {
                rss_mb: rss,
                peak_mb: peak,
                rss_mb_settled: settled,
                rss_mb_at_bench_end: None,
            });
        }
    }
    console::print_run(&run);
    Ok(run)
}

/// After the runs: the comparison table, the report (written with --out) and the verdict line.
fn conclude(
    args: &BenchArgs,
    workload: Workload,
    network: String,
    asset: String,
    payers: usize,
    count: usize,
    runs: Vec<RunReport>,
) -> anyhow::Result<Report> {
    if runs.len() >= 2 {
        console::print_comparison(&runs);
    }
    let report = Report {
        tool: "x402-bench".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        command: redacted_argv(std::env::args()),
        machine: report::Machine::this(),
        workload: report::WorkloadInfo {
            family: args.family,
            scheme: args.scheme,
            mode: workload.mode,
            x402_version: args.x402_version,
            network,
            asset,
            amount: args.amount.to_string(),
            payers,
            r#loop: match workload.looping {
                Loop::Closed { .. } => "closed".into(),
                Loop::Open { .. } => "open".into(),
                Loop::Streams { .. } => "streams".into(),
            },
            concurrency: match workload.looping {
                Loop::Closed { concurrency } => Some(concurrency),
                Loop::Streams { streams } => Some(streams),
                Loop::Open { .. } => None,
            },
            rate: args.rate,
            duration_secs: args.duration,
            count,
            self_contained: args.self_contained(),
            rpc_latency_ms: args.rpc_latency,
            block_gas_limit: (args.self_contained() && args.family == Family::Evm)
                .then_some(args.block_gas_limit),
        },
        passed: runs.iter().all(|r| r.passed),
        runs,
    };
    if let Some(dir) = &args.out {
        report.write(dir)?;
        println!(
            "bench: wrote {} and {}",
            dir.join("report.json").display(),
            dir.join("report.html").display()
        );
    }
    println!(
        "bench: {}",
        if report.passed {
            "PASS (every request succeeded and the chain agrees)".to_owned()
        } else {
            let failed: Vec<&str> = report
                .runs
                .iter()
                .filter(|r| !r.passed)
                .map(|r| r.name.as_str())
                .collect();
            format!("FAIL ({})", failed.join(", "))
        }
    );
    Ok(report)
}

#[cfg(test)]
mod tests;
