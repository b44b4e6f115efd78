//! Served networks: `/api/v1/networks`, `/api/v1/networks/{id}` (and the same list for
//! `/api/v1/supported`), with each network's live chain health.

use actix_web::{web, HttpResponse};
use facilitator_actors::registry::{NetworkEntry, RegistryHandle};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::startup::AppState;

/// The seed's fields, then what the chain access knows: `status` is `active` (every RPC
/// endpoint healthy), `degraded` (some) or `down` (none); the head block's age by the chain's
/// clock; each endpoint's health, its URL redacted.
fn kind(registry: &RegistryHandle, n: &NetworkEntry, version: u8) -> Value {
    let health = registry.chain_health(n.info.v1_name);
    let fee_payer = n.fee_payer();
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
    json!({
        "x402Version": version,
        "scheme": "exact",
        "network": if version == 1 { n.info.v1_name } else { n.info.caip2 },
        "status": health.status.as_str(),
        "block": health.block.unwrap_or(0),
        "feePayer": fee_payer,
        "extra": { "feePayer": fee_payer },
        "blockAgeSeconds": health.block_age_secs(now),
        "rpc": health.endpoints,
    })
}

/// One kind per served network and x402 version (v1 names, then CAIP-2 for v2).
pub fn network_kinds(registry: &RegistryHandle, both_versions: bool) -> Vec<Value> {
    let mut kinds: Vec<Value> = registry
        .networks()
        .iter()
        .map(|n| kind(registry, n, 1))
        .collect();
    if both_versions {
        kinds.extend(registry.networks().iter().map(|n| kind(registry, n, 2)));
    }
    kinds
}

/// The body of `/networks` and `/supported`: the seed's `kinds`, plus the x402 spec's
/// `extensions` and `signers`.
pub fn supported_body(registry: &RegistryHandle) -> Value {
    let mut signers: Vec<String> = registry
        .networks()
        .iter()
        .flat_map(|n| n.signers.iter().map(|a| a.to_checksum(None)))
        .collect();
    signers.sort();
    signers.dedup();
    json!({
        "kinds": network_kinds(registry, true),
        "extensions": [],
        "signers": { "eip155:*": signers },
    })
}

pub async fn list(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(supported_body(&state.registry))
}

pub async fn get_one(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let network = state.registry.network(&id).ok_or_else(|| {
        ApiError::new(
            crate::error::ErrorCode::InvalidRequest,
            "unsupported network",
            "",
        )
    })?;
    let version = if id.starts_with("eip155:") { 2 } else { 1 };
    Ok(HttpResponse::Ok().json(kind(&state.registry, network, version)))
}
