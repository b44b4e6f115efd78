//! The x402 core endpoints, authenticated by client key: `/supported`, `/verify`, `/settle`,
//! and `/settlements` to learn how a settlement ended (by transaction hash, or by the
//! authorization when the answer was lost).
//!
//! Protocol outcomes (`isValid: false`, `success: false`) are HTTP 200 with the reason, as the
//! x402 reference facilitator answers; 400 only for a body that cannot be read as a payment.
//!
//! One payment, one success: exactly one settle of an authorization answers `success: true`;
//! every copy gets `invalid_exact_evm_nonce_already_used`. A settle that carries an
//! `Idempotency-Key` (or a v2 `payment-identifier`) is a safe retry: the same key and body get
//! the original answer again, marked `Idempotent-Replayed: true`; the same key with another
//! payment is 409 `CONFLICT`.

use actix_web::{web, HttpRequest, HttpResponse};
use alloy_primitives::{Address, B256};
use facilitator_actors::facilitator::{Caller, SettleAnswer, SvmSettleAnswer, VerifyAnswer};
use facilitator_actors::idempotency::{self, Begin, IdempotencyKey, Stored};
use facilitator_actors::ServiceError;
use serde::Deserialize;
use serde_json::Value;
use x402::proto::{
    parse_facilitator_request, PaymentRequest, ReasonCode, RequestError, SettleResponse,
    VerifyResponse,
};
use x402::Reason;

use facilitator_actors::metrics::{Operation, X402Event, SUCCESS, SUCCESS_REPEAT};

use super::docs::errors;
use super::networks::Supported;
use super::Data;
use crate::auth::Client;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::rate_limit::{Allowance, Subject};
use crate::state::AppState;

pub mod schema;

/// The response header that marks an answer replayed for an idempotency key.
pub const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";

/// Take one request from the key's rate-limit bucket and from its account's, which all the
/// account's keys share (429 past either).
async fn rate_limited(state: &AppState, client: &Client) -> ApiResult<Option<Allowance>> {
    let limits = &state.rate_limits;
    let key = limits
        .check(
            Subject::Key(&client.0.client_id),
            limits.key_rate(client.0.rate_limit_per_second),
        )
        .await?;
    let account = &client.0.account;
    let account = limits
        .check(
            Subject::Account(account.user_id),
            limits.account_rate(account.rate_limit_per_second),
        )
        .await?;
    Ok(Allowance::tighter(key, account))
}

/// Supported payment kinds
///
/// Same body as `GET /api/v1/networks`, behind client-key auth: any active key may ask,
/// whatever its scope, so it is how a merchant checks that its key works. A key limited to
/// some networks sees only those.
#[utoipa::path(
    get,
    path = "/api/v1/supported",
    tag = "x402",
    security(("clientId" = [], "clientToken" = [])),
    responses(
        (status = 200, description = "The kinds this key may pay with.", body = Supported),
        errors::ClientAuth,
        errors::RateLimited,
        errors::Internal,
    ),
)]
pub async fn supported(state: web::Data<AppState>, client: Client) -> ApiResult<HttpResponse> {
    let allowance = rate_limited(&state, &client).await?;
    let mut body = super::networks::supported(
        &state.registry,
        state.facilitator.svm_runtimes(),
        &state.facilitator.added_schemes(),
    );
    body.kinds.retain(|k| client.0.allows_network(k.network));
    // Keys sorted, as this answer has always had them (see `data_sorted`).
    let body = super::sorted(body)?;
    Ok(Allowance::apply(allowance, HttpResponse::Ok().json(body)))
}

/// A payment request, or the protocol's "no" for a well-formed body it cannot take
/// (an unsupported `x402Version`), or a 400 for a malformed one.
fn parse(body: &Value) -> ApiResult<Result<PaymentRequest, Reason>> {
    match parse_facilitator_request(body) {
        Ok(req) => Ok(Ok(req)),
        Err(RequestError::Unsupported(reason)) => Ok(Err(reason)),
        Err(RequestError::Malformed(details)) => Err(ApiError::invalid_request(details)),
        Err(RequestError::BadPayload(details)) => Err(ApiError::new(
            ErrorCode::InvalidPayload,
            "Invalid payment payload",
            details,
        )),
    }
}

fn verify_body(a: &VerifyAnswer) -> VerifyResponse {
    VerifyResponse {
        cached_result: a.cached,
        extra: a.extra.clone(),
        invalid_message: a.invalid_reason.map(|r| r.message().to_owned()),
        invalid_reason: ReasonCode(a.invalid_reason),
        is_valid: a.is_valid,
        payer: a.payer.map(|p| p.to_checksum(None)).unwrap_or_default(),
        timestamp: chrono::Utc::now().timestamp(),
    }
}

/// The settle answer as sent (and as stored for an idempotency key); `network` is echoed as the
/// request gave it (a v1 name or a CAIP-2 id).
fn settle_body(network: &str, a: &SettleAnswer) -> String {
    let body = SettleResponse {
        amount: if a.amount_empty {
            String::new()
        } else {
            a.amount.to_string()
        },
        block_number: a.block_number.unwrap_or(0),
        error_message: a.error_reason.map(|r| r.message().to_owned()),
        error_reason: ReasonCode(a.error_reason),
        extra: a.extra.clone(),
        network: network.to_owned(),
        payer: a.payer.map(|p| p.to_checksum(None)).unwrap_or_default(),
        success: a.success,
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        transaction: a.transaction.map(|h| h.to_string()).unwrap_or_default(),
    };
    serde_json::to_string(&body).expect("strings, numbers and booleans serialize")
}

/// An SVM settle answer as sent: the transaction is its signature (base58), the block its
/// slot.
fn svm_settle_body(network: &str, a: &SvmSettleAnswer) -> String {
    let body = SettleResponse {
        amount: a.amount.to_string(),
        block_number: a.slot.unwrap_or(0),
        error_message: a
            .error_message
            .clone()
            .or_else(|| a.error_reason.map(|r| r.message().to_owned())),
        error_reason: ReasonCode(a.error_reason),
        extra: None,
        network: network.to_owned(),
        payer: a.payer.clone().unwrap_or_default(),
        success: a.success,
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        transaction: a.transaction.clone().unwrap_or_default(),
    };
    serde_json::to_string(&body).expect("strings, numbers and booleans serialize")
}

/// A protocol outcome for the metrics: what was asked (as far as it could be read) and how it
/// ended.
struct Outcome<'a> {
    client: &'a Client,
    operation: Operation,
    req: Option<&'a PaymentRequest>,
    body: &'a Value,
    reason: Option<Reason>,
    /// This call mined the settlement's transaction (else a success is an idempotent replay).
    mined_here: bool,
    started: std::time::Instant,
}

/// The metrics' network (v1 name, EVM or SVM) and asset (an EVM token's checksummed address,
/// an SVM mint in base58) of a request.
fn metrics_labels(r: &PaymentRequest) -> (String, String) {
    let network = x402::network::parse_network(&r.network)
        .map(|n| n.v1_name)
        .or_else(|| x402::svm::parse_svm_network(&r.network).map(|n| n.v1_name))
        .map(str::to_owned)
        .unwrap_or_else(|| r.network.clone());
    let asset = match &r.svm {
        Some(svm) => svm.asset.clone(),
        None => r.asset.to_checksum(None),
    };
    (network, asset)
}

fn record(state: &AppState, o: Outcome<'_>) {
    let (network, asset) = match o.req {
        Some(r) => metrics_labels(r),
        // Unreadable as a payment of a version we take: keep what the body says.
        None => (
            o.body["paymentRequirements"]["network"]
                .as_str()
                .unwrap_or("unknown")
                .chars()
                .take(64)
                .collect(),
            String::new(),
        ),
    };
    state.metrics.record_x402(X402Event {
        day: chrono::Utc::now().date_naive(),
        client_id: o.client.0.client_id.clone(),
        network,
        asset,
        operation: o.operation,
        outcome: match (o.reason, o.operation, o.mined_here) {
            (Some(r), _, _) => r.as_str().to_owned(),
            // A settle success whose transaction this call did not mine: an idempotent retry
            // answered with the original outcome.
            (None, Operation::Settle, false) => SUCCESS_REPEAT.to_owned(),
            (None, _, _) => SUCCESS.to_owned(),
        },
        // Money, gas and fees are accounted when the transaction is mined
        // (Operation::Transfer); an answer counts only as an outcome.
        amount: alloy_primitives::U256::ZERO,
        gas_used: 0,
        fee_wei: alloy_primitives::U256::ZERO,
        latency: o.started.elapsed(),
    });
}

/// Verify a payment
///
/// Checks a signed payment against the requirements without settling it. A payment that is
/// not valid is a 200 with `isValid: false` and the reason.
///
/// The economic floor is judged first, with no call to the chain: a value of 0 or below the
/// asset's configured `min_amount`, requirements asking 0 (or below it), or a payer paying
/// itself are invalid (`invalid_exact_evm_payload_authorization_value`; Permit2 and `upto`:
/// `permit2_invalid_amount`), and so is a signature longer than its kind allows (65 bytes for
/// an EOA, `verify.max_signature_bytes`, default 4096, for a smart wallet's).
#[utoipa::path(
    post,
    path = "/api/v1/verify",
    tag = "x402",
    security(("clientId" = [], "clientToken" = [])),
    request_body = schema::PaymentRequest,
    responses(
        (status = 200, description = "The verdict.", body = VerifyResponse),
        (status = 400, description = "`INVALID_REQUEST`: malformed request; `INVALID_PAYLOAD`: the payment payload cannot be decoded.", body = ApiError),
        (status = 403, description = "`FORBIDDEN`: the key's scope does not include `verify`, or the payment's network is outside the key's `networks`.", body = ApiError),
        (status = 500, description = "`VERIFICATION_FAILED`: verification could not complete; when the network's RPC does not answer in time, `details` says so and `Retry-After` is set.", body = ApiError,
            headers(("Retry-After" = u64, description = "When the network was unavailable: seconds to wait."))),
        errors::ClientAuth,
        errors::RateLimited,
        errors::JsonBody,
    ),
)]
pub async fn verify(
    state: web::Data<AppState>,
    client: Client,
    body: web::Json<Value>,
) -> ApiResult<HttpResponse> {
    let started = std::time::Instant::now();
    client.require("verify")?;
    let allowance = rate_limited(&state, &client).await?;
    let outcome = |req, reason| Outcome {
        client: &client,
        operation: Operation::Verify,
        req,
        body: &body,
        reason,
        mined_here: false,
        started,
    };
    let req = match parse(&body)? {
        Ok(req) => {
            client.require_network(&req.network)?;
            req
        }
        Err(reason) => {
            record(&state, outcome(None, Some(reason)));
            return Ok(Allowance::apply(
                allowance,
                HttpResponse::Ok().json(verify_body(&VerifyAnswer::rejected(reason))),
            ));
        }
    };
    let failed = |e: ServiceError| {
        tracing::error!(error = %e, "verify failed");
        ApiError::x402_failure(
            &e,
            ErrorCode::VerificationFailed,
            "Payment verification failed",
            &req.network,
        )
    };
    if req.svm.is_some() {
        let answer = state.facilitator.verify_svm(&req).await.map_err(failed)?;
        record(&state, outcome(Some(&req), answer.invalid_reason));
        let body = VerifyResponse {
            cached_result: false,
            invalid_message: answer
                .invalid_message
                .clone()
                .or_else(|| answer.invalid_reason.map(|r| r.message().to_owned())),
            extra: None,
            invalid_reason: ReasonCode(answer.invalid_reason),
            is_valid: answer.is_valid,
            payer: answer.payer.clone().unwrap_or_default(),
            timestamp: chrono::Utc::now().timestamp(),
        };
        return Ok(Allowance::apply(allowance, HttpResponse::Ok().json(body)));
    }
    let answer = state.facilitator.verify(&req).await.map_err(failed)?;
    record(&state, outcome(Some(&req), answer.invalid_reason));
    Ok(Allowance::apply(
        allowance,
        HttpResponse::Ok().json(verify_body(&answer)),
    ))
}

/// The idempotency key of a settle: the `Idempotency-Key` header, else a valid v2 payment id.
fn idempotency_key(http: &HttpRequest, req: &PaymentRequest) -> ApiResult<Option<IdempotencyKey>> {
    let mut values = http.headers().get_all("idempotency-key");
    if let Some(value) = values.next() {
        if values.next().is_some() {
            return Err(ApiError::invalid_request(
                "give one Idempotency-Key header, not several",
            ));
        }
        let key = value
            .to_str()
            .ok()
            .ok_or("Idempotency-Key must be visible ASCII characters")
            .and_then(idempotency::parse_header)
            .map_err(ApiError::invalid_request)?;
        return Ok(Some(IdempotencyKey::Header(key)));
    }
    // An invalid payment id is refused by the checks (`invalid_payload`); it is no key.
    Ok(req
        .payment_id
        .clone()
        .filter(|_| req.payment_id_valid)
        .map(IdempotencyKey::PaymentId))
}

/// A settle answer as sent: the stored body of an idempotency key is replayed byte for byte.
fn settle_response(allowance: Option<Allowance>, body: String, replayed: bool) -> HttpResponse {
    let mut res = HttpResponse::Ok();
    res.content_type("application/json");
    if replayed {
        res.insert_header((IDEMPOTENT_REPLAYED, "true"));
    }
    Allowance::apply(allowance, res.body(body))
}

/// Settle a payment
///
/// Verifies, then submits the transfer on chain and waits for its receipt. A refused or
/// reverted settlement is a 200 with `success: false` and the reason; `settlement_pending`
/// means the outcome is not known yet (see `GET /api/v1/settlements/{tx}`).
///
/// A payment worth nothing is refused as at `/verify`, before anything is sent or stored: a
/// value (for `upto`, the amount settled) of 0 or below the asset's `min_amount`, requirements
/// asking 0, a payer paying itself, an oversized signature. A settle refused before anything
/// was sent leaves no settlement to look up.
#[utoipa::path(
    post,
    path = "/api/v1/settle",
    tag = "x402",
    security(("clientId" = [], "clientToken" = [])),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "A safe retry (IETF httpapi draft): 1 to 255 visible ASCII characters, bare or as a quoted string. The same key with the same payment, from the same client key, gets the original answer again (waiting while it is in flight), marked `Idempotent-Replayed: true`; with another payment, 409. Kept 24 h. Without it, a v2 `payment-identifier` id plays this part."),
    ),
    request_body = schema::PaymentRequest,
    responses(
        (status = 200, description = "The outcome. Exactly one settle of an authorization ever answers `success: true`; a copy (concurrent or later, from any key) answers `invalid_exact_evm_nonce_already_used` with no transaction.", body = SettleResponse,
            headers(("Idempotent-Replayed" = String, description = "`true` on an answer replayed for an idempotency key."))),
        (status = 400, description = "`INVALID_REQUEST`: malformed request or `Idempotency-Key`; `INVALID_PAYLOAD`: the payment payload cannot be decoded.", body = ApiError),
        (status = 403, description = "`FORBIDDEN`: the key's scope does not include `settle`, the payment's network is outside the key's `networks`, the key or its account has no settle credits left, or the account's gas budget for today (UTC) is spent.", body = ApiError),
        (status = 409, description = "`CONFLICT`: this idempotency key was used with another payment.", body = ApiError),
        (status = 500, description = "`SETTLEMENT_FAILED`: settlement could not complete; when the network's RPC does not answer in time, or no signer can send (none can pay gas, no lease holder), `details` says so and `Retry-After` is set.", body = ApiError,
            headers(("Retry-After" = u64, description = "When nothing could be sent: seconds to wait."))),
        errors::ClientAuth,
        errors::RateLimited,
        errors::JsonBody,
    ),
)]
pub async fn settle(
    state: web::Data<AppState>,
    client: Client,
    http: HttpRequest,
    body: web::Json<Value>,
) -> ApiResult<HttpResponse> {
    let started = std::time::Instant::now();
    client.require("settle")?;
    let allowance = rate_limited(&state, &client).await?;
    let outcome = |req, reason: Option<Reason>, mined_here: bool| Outcome {
        client: &client,
        operation: Operation::Settle,
        req,
        body: &body,
        reason,
        mined_here,
        started,
    };
    let req = match parse(&body)? {
        Ok(req) => {
            client.require_network(&req.network)?;
            req
        }
        Err(reason) => {
            let answer = SettleAnswer::rejected(reason);
            record(
                &state,
                outcome(None, answer.error_reason, answer.mined_here),
            );
            let network = body["paymentRequirements"]["network"]
                .as_str()
                .unwrap_or_default();
            return Ok(settle_response(
                allowance,
                settle_body(network, &answer),
                false,
            ));
        }
    };
    let client_id = &client.0.client_id;
    let key = idempotency_key(&http, &req)?;
    let mut replayed = false;
    if let Some(key) = &key {
        match idempotency::begin(
            &state.db,
            client_id,
            key,
            req.request_hash,
            state.idempotency_ttl,
        )
        .await
        .map_err(ServiceError::from)?
        {
            Begin::New => {}
            Begin::Retry => replayed = true,
            Begin::Conflict => {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "This idempotency key was used with another payment",
                    "use a new key for a new payment; repeat a request only with the same body",
                ))
            }
            Begin::Replay(stored) => {
                record_replay(&state, &client, &req, &stored, started);
                return Ok(settle_response(allowance, stored.body, true));
            }
        }
    }
    let caller = Caller {
        client_id: client_id.clone(),
        credits_limited: client.0.credits_limited,
        account: client.0.account.clone(),
        idempotency_key: key.as_ref().map(IdempotencyKey::stored),
    };
    let failed = |e: ServiceError| match e {
        // No settle credits or gas budget left: the key's or the account's problem, not
        // the service's.
        ServiceError::Forbidden(_) => ApiError::from(e),
        // Nothing could be sent (no signer can pay, none is leased anywhere): say why;
        // nothing was settled, so a retry later is safe.
        ServiceError::NoSigner(ref why) => {
            tracing::warn!(reason = %why, "settle refused: no signer available");
            ApiError::from(e)
        }
        e => {
            tracing::error!(error = %e, "settle failed");
            ApiError::x402_failure(
                &e,
                ErrorCode::SettlementFailed,
                "Payment settlement failed",
                &req.network,
            )
        }
    };
    let (reason, mined_here, mut body) = if req.svm.is_some() {
        let a = state
            .facilitator
            .settle_svm(&req, Some(caller))
            .await
            .map_err(failed)?;
        (
            a.error_reason,
            a.mined_here,
            svm_settle_body(&req.network, &a),
        )
    } else {
        let a = state
            .facilitator
            .settle(&req, Some(caller))
            .await
            .map_err(failed)?;
        (a.error_reason, a.mined_here, settle_body(&req.network, &a))
    };
    record(&state, outcome(Some(&req), reason, mined_here));
    if let Some(key) = &key {
        // Every repeat answers what the first final answer said. `settlement_pending` is not
        // final: a repeat settles again and learns how it ended.
        let is_final = reason != Some(Reason::SettlementPending);
        body = idempotency::complete(
            &state.db,
            client_id,
            key,
            Stored { status: 200, body },
            is_final,
        )
        .await
        .map_err(ServiceError::from)?
        .body;
    }
    tracing::debug!(
        handler_ms = started.elapsed().as_secs_f64() * 1e3,
        "settle answered"
    );
    Ok(settle_response(allowance, body, replayed))
}

/// The metrics of an answer replayed from an idempotency key: its outcome again, no money.
fn record_replay(
    state: &AppState,
    client: &Client,
    req: &PaymentRequest,
    stored: &Stored,
    started: std::time::Instant,
) {
    let body: Value = serde_json::from_str(&stored.body).unwrap_or_default();
    let outcome = match body["errorReason"].as_str() {
        _ if body["success"] == true => SUCCESS_REPEAT.to_owned(),
        Some(r) if !r.is_empty() => r.to_owned(),
        _ => Reason::UnexpectedSettleError.as_str().to_owned(),
    };
    let (network, asset) = metrics_labels(req);
    state.metrics.record_x402(X402Event {
        day: chrono::Utc::now().date_naive(),
        client_id: client.0.client_id.clone(),
        network,
        asset,
        operation: Operation::Settle,
        outcome,
        amount: alloy_primitives::U256::ZERO,
        gas_used: 0,
        fee_wei: alloy_primitives::U256::ZERO,
        latency: started.elapsed(),
    });
}

pub use facilitator_actors::webhooks::Settlement;

/// Get a settlement
///
/// A settlement made with this client key, by its transaction: an EVM transaction hash, or a
/// Solana transaction signature (base58).
#[utoipa::path(
    get,
    path = "/api/v1/settlements/{tx}",
    tag = "x402",
    security(("clientId" = [], "clientToken" = [])),
    params(
        ("tx" = String, Path, description = "Transaction hash, 0x-prefixed 32 bytes; or a Solana transaction signature, base58 of 64 bytes.", pattern = "^(0x[0-9a-fA-F]{64}|[1-9A-HJ-NP-Za-km-z]{64,88})$"),
    ),
    responses(
        (status = 200, description = "The settlement.", body = Data<Settlement>),
        (status = 404, description = "`NOT_FOUND`: no settlement of this key has that transaction.", body = ApiError),
        errors::BadRequest,
        errors::ClientAuth,
        errors::Internal,
    ),
)]
pub async fn settlement(
    state: web::Data<AppState>,
    client: Client,
    tx: web::Path<String>,
) -> ApiResult<HttpResponse> {
    // The ledger's form: lowercase 0x hex for EVM, base58 for Solana.
    let tx = match tx.parse::<B256>() {
        Ok(hash) => hash.to_string(),
        Err(_) => x402::svm::parse_signature(&tx)
            .map(|sig| sig.to_string())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    "Invalid path parameter",
                    "expected a 0x-prefixed 32-byte transaction hash or a base58 Solana transaction signature",
                )
            })?,
    };
    let row = state
        .facilitator
        .settlement_by_tx(&tx, &client.0.client_id)
        .await?;
    Ok(super::data(Settlement::from(row)))
}

/// `GET /settlements?network=&payer=&nonce=[&asset=]`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuthorizationQuery {
    /// v1 name or CAIP-2 id.
    #[param(example = "base-sepolia")]
    pub network: String,
    /// The payer (`authorization.from`), 0x-prefixed 20 bytes.
    #[param(pattern = "^0x[0-9a-fA-F]{40}$")]
    pub payer: String,
    /// The EIP-3009 authorization nonce, 0x-prefixed 32 bytes.
    #[param(pattern = "^0x[0-9a-fA-F]{64}$")]
    pub nonce: String,
    /// The token; needed only when one authorization nonce was used on several assets.
    #[param(pattern = "^0x[0-9a-fA-F]{40}$")]
    pub asset: Option<String>,
}

/// Find a settlement by its authorization
///
/// A settlement made with this client key, by its EIP-3009 authorization: how a resource
/// server that lost a settle's answer (a timeout, a crash) learns the outcome without settling
/// again (a new settle would be a copy, answered "nonce already used").
#[utoipa::path(
    get,
    path = "/api/v1/settlements",
    tag = "x402",
    security(("clientId" = [], "clientToken" = [])),
    params(AuthorizationQuery),
    responses(
        (status = 200, description = "The settlement.", body = Data<Settlement>),
        (status = 404, description = "`NOT_FOUND`: this key made no settlement of that authorization, or the network is not served here.", body = ApiError),
        errors::BadRequest,
        errors::ClientAuth,
        errors::Internal,
    ),
)]
pub async fn settlement_by_authorization(
    state: web::Data<AppState>,
    client: Client,
    query: web::Query<AuthorizationQuery>,
) -> ApiResult<HttpResponse> {
    let bad = |what: &str| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "Invalid query parameters",
            what.to_owned(),
        )
    };
    // A network not served here made no settlement: 404, like any other unknown authorization.
    let network = x402::network::parse_network(query.network.trim()).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "settlement not found",
            "network: not a network served here (v1 name or CAIP-2 id)",
        )
    })?;
    let payer: Address = query
        .payer
        .trim()
        .parse()
        .map_err(|_| bad("payer: expected a 0x-prefixed 20-byte address"))?;
    let nonce: B256 = query
        .nonce
        .trim()
        .parse()
        .map_err(|_| bad("nonce: expected a 0x-prefixed 32-byte hex nonce"))?;
    let asset: Option<Address> = query
        .asset
        .as_deref()
        .map(|a| a.trim().parse())
        .transpose()
        .map_err(|_| bad("asset: expected a 0x-prefixed 20-byte address"))?;
    let row = state
        .facilitator
        .settlement_by_authorization(network, payer, nonce, asset, &client.0.client_id)
        .await?;
    Ok(super::data(Settlement::from(row)))
}
