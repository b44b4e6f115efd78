//! Served networks: `/api/v1/networks`, `/api/v1/networks/{id}` (and the same list for
//! `/api/v1/supported`), with each network's live chain health.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use facilitator_actors::chain::{EndpointHealth, NetworkStatus};
use facilitator_actors::facilitator::AddedScheme;
use facilitator_actors::registry::{NetworkEntry, RegistryHandle};
use facilitator_actors::svm::SvmRuntime;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::docs::errors;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeePayerExtra {
    /// The address that pays gas for settlements on this network.
    pub fee_payer: String,
    /// v2 `upto`: the address a buyer names in `witness.facilitator` (it sends the settlement).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facilitator_address: Option<String>,
    /// v2 `exact`: the transfer methods taken (`eip3009`, `permit2`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["eip3009", "permit2"]))]
    pub asset_transfer_methods: Option<Vec<&'static str>>,
    /// v2: the x402 extensions taken on this network (`eip2612GasSponsoring`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["eip2612GasSponsoring"]))]
    pub extensions: Option<Vec<&'static str>>,
    /// v2 `batch-settlement`: the address this facilitator signs claims and refunds for, as a
    /// merchant's delegated `receiverAuthorizer` (absent: none configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver_authorizer: Option<String>,
}

/// A settlement signer of a network, as one instance sees it (`/api/v1/status` only).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignerState {
    #[schema(example = "0x1111111111111111111111111111111111111111")]
    pub address: String,
    /// This instance holds the signer's lease (it drives the key's nonce).
    pub leased: bool,
    /// The signer can pay a settlement's gas (it gets new settlements).
    pub funded: bool,
    /// Native balance in ether units, as last read; `null` before the first read.
    #[schema(example = "1.250000")]
    pub balance: Option<String>,
    /// Below the network's `min_signer_balance_eth`.
    pub below_floor: bool,
    /// That floor (`min_signer_balance_eth`), in ether units.
    #[schema(example = "0.010000")]
    pub floor: String,
    /// Transactions of this signer awaiting their receipt here.
    pub in_flight: i64,
}

/// A payment kind served: one network under one x402 version (v1 uses network names, v2
/// CAIP-2 identifiers), with what the chain access knows of the network.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkKind {
    #[schema(example = 1)]
    pub x402_version: u8,
    /// `exact` (v1 and v2; v2 by EIP-3009 or Permit2) or `upto` (v2, Permit2).
    #[schema(example = "exact")]
    pub scheme: String,
    /// `base-sepolia` (x402 v1) or `eip155:84532` (x402 v2).
    #[schema(example = "base-sepolia")]
    pub network: &'static str,
    pub status: NetworkStatus,
    /// Latest block of the network's healthy RPC endpoints (0 when none answers).
    pub block: u64,
    #[schema(example = "0x1111111111111111111111111111111111111111")]
    pub fee_payer: String,
    pub extra: FeePayerExtra,
    /// Seconds since that block's timestamp (the chain's clock); null when unknown.
    #[schema(required = true)]
    pub block_age_seconds: Option<u64>,
    /// The network's RPC endpoints in order of preference, with their health (URLs redacted).
    pub rpc: Vec<EndpointHealth>,
    /// `/api/v1/status` only: the network's signers as this instance sees them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signers: Option<Vec<SignerState>>,
}

pub(super) fn kind(registry: &RegistryHandle, n: &NetworkEntry, version: u8) -> NetworkKind {
    let health = registry.chain_health(n.info.v1_name);
    let fee_payer = n.fee_payer();
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
    NetworkKind {
        x402_version: version,
        scheme: "exact".to_owned(),
        network: if version == 1 {
            n.info.v1_name
        } else {
            n.info.caip2
        },
        status: health.status,
        block: health.block.unwrap_or(0),
        fee_payer: fee_payer.clone(),
        extra: FeePayerExtra {
            fee_payer,
            facilitator_address: None,
            asset_transfer_methods: (version == 2).then(|| vec!["eip3009", "permit2"]),
            extensions: (version == 2).then(|| vec![x402::permit2::EIP2612_GAS_SPONSORING]),
            receiver_authorizer: None,
        },
        block_age_seconds: health.block_age_secs(now),
        rpc: health.endpoints.clone(),
        signers: None,
    }
}

/// The v2 `upto` kind of a network: Permit2 through the upto proxy, sent by the fee payer.
fn upto_kind(registry: &RegistryHandle, n: &NetworkEntry) -> NetworkKind {
    let mut kind = kind(registry, n, 2);
    kind.scheme = "upto".to_owned();
    kind.extra.asset_transfer_methods = None;
    kind.extra.facilitator_address = Some(kind.fee_payer.clone());
    kind
}

/// The `exact` kind of an SVM network: its fee payer (`extra.feePayer`, the account a buyer
/// makes pay the transaction's fees) and its chain access's health, like an EVM network's.
pub(super) fn svm_kind(rt: &SvmRuntime, version: u8) -> NetworkKind {
    let health = rt.chain.health();
    let fee_payer = rt
        .advertised_fee_payer()
        .map(|k| k.to_string())
        .unwrap_or_default();
    NetworkKind {
        x402_version: version,
        scheme: "exact".to_owned(),
        network: if version == 1 {
            rt.network.v1_name
        } else {
            rt.network.caip2
        },
        status: health.status,
        block: health.block.unwrap_or(0),
        fee_payer: fee_payer.clone(),
        extra: FeePayerExtra {
            fee_payer,
            facilitator_address: None,
            asset_transfer_methods: None,
            extensions: None,
            receiver_authorizer: None,
        },
        // The probe stamps an SVM head with our clock: no block age to tell.
        block_age_seconds: None,
        rpc: health.endpoints.clone(),
        signers: None,
    }
}

/// One kind per served network and x402 version (v1 names, then CAIP-2 for v2), then v2
/// `upto` per network; SVM networks' after the EVM ones of each version.
pub fn network_kinds(
    registry: &RegistryHandle,
    svm: &[Arc<SvmRuntime>],
    both_versions: bool,
) -> Vec<NetworkKind> {
    let mut kinds: Vec<NetworkKind> = registry
        .networks()
        .iter()
        .map(|n| kind(registry, n, 1))
        .collect();
    kinds.extend(svm.iter().map(|rt| svm_kind(rt, 1)));
    if both_versions {
        kinds.extend(registry.networks().iter().map(|n| kind(registry, n, 2)));
        kinds.extend(svm.iter().map(|rt| svm_kind(rt, 2)));
        kinds.extend(registry.networks().iter().map(|n| upto_kind(registry, n)));
    }
    kinds
}

/// The answer of `GET /api/v1/networks` and `GET /api/v1/supported` (bare, no envelope): the
/// kinds served, then the x402 `extensions` and `signers` (fee payer addresses by CAIP-2
/// family).
#[derive(Serialize, ToSchema)]
pub struct Supported {
    pub kinds: Vec<NetworkKind>,
    /// x402 extensions advertised: `eip2612GasSponsoring` (Permit2 payments; per network in
    /// each v2 kind's `extra.extensions`). `payment-identifier` ids are honoured on `/settle`
    /// all the same.
    pub extensions: Vec<Value>,
    #[schema(example = json!({"eip155:*": ["0x1111111111111111111111111111111111111111"]}))]
    pub signers: BTreeMap<String, Vec<String>>,
}

/// The kind of a method registered besides the built-in ones (`added`: its x402 version and
/// scheme) on a network: its fee payer and, for `batch-settlement`, the delegated
/// `receiverAuthorizer` it signs for.
fn added_kind(registry: &RegistryHandle, n: &NetworkEntry, added: &AddedScheme) -> NetworkKind {
    let mut kind = kind(registry, n, added.x402_version);
    kind.scheme = added.scheme.clone();
    kind.extra.asset_transfer_methods = None;
    kind.extra.extensions = None;
    kind.extra.receiver_authorizer = added.receiver_authorizer.map(|a| a.to_checksum(None));
    kind
}

/// The body of `/networks` and `/supported`: the seed's `kinds` (then those of methods
/// registered besides the built-in ones, `added`), plus the x402 spec's `extensions` and
/// `signers`.
pub fn supported(
    registry: &RegistryHandle,
    svm: &[Arc<SvmRuntime>],
    added: &[AddedScheme],
) -> Supported {
    let mut signers: Vec<String> = registry
        .networks()
        .iter()
        .flat_map(|n| n.signers.iter().map(|a| a.to_checksum(None)))
        .collect();
    signers.sort();
    signers.dedup();
    let mut svm_signers: Vec<String> = svm
        .iter()
        .flat_map(|rt| rt.fee_payer_keys())
        .map(|k| k.to_string())
        .collect();
    svm_signers.sort();
    svm_signers.dedup();
    let mut kinds = network_kinds(registry, svm, true);
    for scheme in added {
        kinds.extend(
            registry
                .networks()
                .iter()
                .map(|n| added_kind(registry, n, scheme)),
        );
    }
    Supported {
        kinds,
        extensions: vec![json!(x402::permit2::EIP2612_GAS_SPONSORING)],
        signers: std::iter::once(("eip155:*".to_owned(), signers))
            .chain((!svm_signers.is_empty()).then(|| ("solana:*".to_owned(), svm_signers)))
            .collect(),
    }
}

/// List served networks
///
/// One kind per network and x402 version: v1 names, then v2 CAIP-2 ids; each with its
/// status (`active`, `degraded`, `down`), head block and RPC endpoints.
#[utoipa::path(
    get,
    path = "/api/v1/networks",
    tag = "Networks",
    responses(
        (status = 200, description = "The networks served.", body = Supported),
        errors::Internal,
    ),
)]
pub async fn list(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(supported(
        &state.registry,
        state.facilitator.svm_runtimes(),
        &state.facilitator.added_schemes(),
    ))
}

/// Get one network
///
/// The kind served for a network: x402 v1 when asked by name, v2 when asked by CAIP-2 id.
#[utoipa::path(
    get,
    path = "/api/v1/networks/{id}",
    tag = "Networks",
    params(
        ("id" = String, Path, description = "A network: v1 name (`base-sepolia`) or CAIP-2 id (`eip155:84532`)."),
    ),
    responses(
        (status = 200, description = "The network.", body = NetworkKind),
        (status = 400, description = "`INVALID_REQUEST` (`unsupported network`): unknown or not served.", body = ApiError),
        errors::Internal,
    ),
)]
pub async fn get_one(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if let Some(rt) = state.facilitator.svm_runtime(&id) {
        let version = if id.starts_with("solana:") { 2 } else { 1 };
        return Ok(HttpResponse::Ok().json(svm_kind(rt, version)));
    }
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
