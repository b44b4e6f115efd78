//! What a facilitator says it serves (`GET /supported`), checked before a run.

use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::Value;

use super::engine::{self, Target};

/// GET `/supported`: the facilitator answers, and serves `exact` on this network and version;
/// that kind (of the first instance), whose `extra` a payment may need (Solana's `feePayer`).
pub(crate) async fn probe(target: &Target, network: &str, version: u8) -> anyhow::Result<Value> {
    probe_scheme(target, "exact", network, version).await
}

/// As [`probe`], for `scheme`.
pub(crate) async fn probe_scheme(
    target: &Target,
    scheme: &str,
    network: &str,
    version: u8,
) -> anyhow::Result<Value> {
    let mut first = None;
    for base in engine::base_urls(&target.url) {
        let one = Target {
            name: target.name.clone(),
            url: base,
            headers: target.headers.clone(),
        };
        let kind = probe_one(&one, scheme, network, version).await?;
        first.get_or_insert(kind);
    }
    first.with_context(|| format!("no facilitator URL in {:?}", target.url))
}

async fn probe_one(
    target: &Target,
    scheme: &str,
    network: &str,
    version: u8,
) -> anyhow::Result<Value> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .default_headers(target.headers.clone())
        .build()?;
    let url = format!("{}/supported", target.url.trim_end_matches('/'));
    let res = http.get(&url).send().await.map_err(|e| {
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            cause = format!("{cause}: {s}");
            source = s.source();
        }
        anyhow::anyhow!("cannot reach the facilitator at {}: {cause}", target.url)
    })?;
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "the facilitator at {} answered GET /supported with HTTP {}{}: {}",
            target.url,
            status.as_u16(),
            if status.as_u16() == 401 {
                " (does it need --header, e.g. a client key?)"
            } else {
                ""
            },
            text.chars().take(300).collect::<String>()
        );
    }
    let body: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{url} did not answer JSON: is {} an x402 facilitator?",
            target.url
        )
    })?;
    let kinds = body["kinds"].as_array().cloned().unwrap_or_default();
    let served = kinds.iter().find(|k| {
        k["x402Version"] == u64::from(version) && k["scheme"] == scheme && k["network"] == network
    });
    let Some(served) = served else {
        let listed: Vec<String> = kinds
            .iter()
            .map(|k| {
                format!("v{} {} {}", k["x402Version"], k["scheme"], k["network"]).replace('"', "")
            })
            .collect();
        bail!(
            "the facilitator at {} does not serve {scheme} on {network} for x402 v{version} (its /supported lists: {})",
            target.url,
            if listed.is_empty() { "nothing".into() } else { listed.join(", ") }
        );
    };
    Ok(served.clone())
}
