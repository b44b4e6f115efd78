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
use facilitator_actors::facilitator::{Caller, SettleAnswer, SettlementRow, VerifyAnswer};
use facilitator_actors::idempotency::{self, Begin, IdempotencyKey, Stored};
use facilitator_actors::ServiceError;
use serde::Deserialize;
use serde_json::{json, Value};
use x402::proto::{parse_facilitator_request, PaymentRequest, RequestError};
use x402::Reason;

use facilitator_actors::metrics::{Operation, X402Event, SUCCESS, SUCCESS_REPEAT};

use super::networks::supported_body;
use crate::auth::Client;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::rate_limit::Allowance;
use crate::startup::AppState;

/// The response header that marks an answer replayed for an idempotency key.
pub const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";

/// Take one request from the key's rate-limit bucket (429 past it).
fn rate_limited(state: &AppState, client: &Client) -> ApiResult<Option<Allowance>> {
    state
        .rate_limits
        .check(&client.0.client_id, client.0.rate_limit_per_second)
}

/// Same body as `/networks`, behind client auth: any active key may ask (it is how a merchant
/// checks that its key works), whatever its scope. A key limited to some networks sees only
/// those.
pub async fn supported(state: web::Data<AppState>, client: Client) -> ApiResult<HttpResponse> {
    let allowance = rate_limited(&state, &client)?;
    let mut body = supported_body(&state.registry);
    if let Some(kinds) = body["kinds"].as_array_mut() {
        kinds.retain(|k| {
            k["network"]
                .as_str()
                .is_some_and(|n| client.0.allows_network(n))
        });
    }
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

fn verify_body(a: &VerifyAnswer) -> Value {
    let mut body = json!({
        "isValid": a.is_valid,
        "invalidReason": a.invalid_reason.map(|r| r.as_str()).unwrap_or(""),
        "payer": a.payer.map(|p| p.to_checksum(None)).unwrap_or_default(),
        "timestamp": chrono::Utc::now().timestamp(),
        "cachedResult": a.cached,
    });
    if let Some(r) = a.invalid_reason {
        body["invalidMessage"] = json!(r.message());
    }
    body
}

fn settle_body(network: &str, a: &SettleAnswer) -> Value {
    let mut body = json!({
        "success": a.success,
        "transaction": a.transaction.map(|h| h.to_string()).unwrap_or_default(),
        "errorReason": a.error_reason.map(|r| r.as_str()).unwrap_or(""),
        "network": network,
        "payer": a.payer.map(|p| p.to_checksum(None)).unwrap_or_default(),
        "blockNumber": a.block_number.unwrap_or(0),
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "amount": a.amount.to_string(),
    });
    if let Some(r) = a.error_reason {
        body["errorMessage"] = json!(r.message());
    }
    body
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

fn record(state: &AppState, o: Outcome<'_>) {
    let (network, asset) = match o.req {
        Some(r) => (
            x402::network::parse_network(&r.network)
                .map(|n| n.v1_name.to_owned())
                .unwrap_or_else(|| r.network.clone()),
            r.asset.to_checksum(None),
        ),
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

pub async fn verify(
    state: web::Data<AppState>,
    client: Client,
    body: web::Json<Value>,
) -> ApiResult<HttpResponse> {
    let started = std::time::Instant::now();
    client.require("verify")?;
    let allowance = rate_limited(&state, &client)?;
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
    let answer = state.facilitator.verify(&req).await.map_err(|e| {
        tracing::error!(error = %e, "verify failed");
        ApiError::x402_failure(
            &e,
            ErrorCode::VerificationFailed,
            "Payment verification failed",
            &req.network,
        )
    })?;
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

pub async fn settle(
    state: web::Data<AppState>,
    client: Client,
    http: HttpRequest,
    body: web::Json<Value>,
) -> ApiResult<HttpResponse> {
    let started = std::time::Instant::now();
    client.require("settle")?;
    let allowance = rate_limited(&state, &client)?;
    let outcome = |req, answer: &SettleAnswer| Outcome {
        client: &client,
        operation: Operation::Settle,
        req,
        body: &body,
        reason: answer.error_reason,
        mined_here: answer.mined_here,
        started,
    };
    let req = match parse(&body)? {
        Ok(req) => {
            client.require_network(&req.network)?;
            req
        }
        Err(reason) => {
            let answer = SettleAnswer::rejected(reason);
            record(&state, outcome(None, &answer));
            let network = body["paymentRequirements"]["network"]
                .as_str()
                .unwrap_or_default();
            return Ok(settle_response(
                allowance,
                settle_body(network, &answer).to_string(),
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
    let answer = state
        .facilitator
        .settle(
            &req,
            Some(Caller {
                client_id: client_id.clone(),
                credits_limited: client.0.credits_limited,
                idempotency_key: key.as_ref().map(IdempotencyKey::stored),
            }),
        )
        .await
        .map_err(|e| match e {
            // No settle credits left: the key's problem, not the service's.
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
        })?;
    record(&state, outcome(Some(&req), &answer));
    let mut body = settle_body(&req.network, &answer).to_string();
    if let Some(key) = &key {
        // Every repeat answers what the first final answer said. `settlement_pending` is not
        // final: a repeat settles again and learns how it ended.
        let is_final = answer.error_reason != Some(Reason::SettlementPending);
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
    state.metrics.record_x402(X402Event {
        day: chrono::Utc::now().date_naive(),
        client_id: client.0.client_id.clone(),
        network: x402::network::parse_network(&req.network)
            .map(|n| n.v1_name.to_owned())
            .unwrap_or_else(|| req.network.clone()),
        asset: req.asset.to_checksum(None),
        operation: Operation::Settle,
        outcome,
        amount: alloy_primitives::U256::ZERO,
        gas_used: 0,
        fee_wei: alloy_primitives::U256::ZERO,
        latency: started.elapsed(),
    });
}

fn settlement_body(row: SettlementRow) -> Value {
    json!({
        "transaction": row.tx_hash,
        "status": row.status,
        "success": row.status == "confirmed",
        "errorReason": row.error_reason.unwrap_or_default(),
        "network": row.network,
        "asset": row.asset,
        "payer": row.payer,
        "payTo": row.pay_to,
        "amount": row.amount,
        "nonce": row.auth_nonce,
        "blockNumber": row.block_number.unwrap_or(0),
        "gasUsed": row.gas_used,
        "createdAt": row.created_at,
        "confirmedAt": row.confirmed_at,
    })
}

pub async fn settlement(
    state: web::Data<AppState>,
    client: Client,
    tx: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let hash: B256 = tx.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "Invalid path parameter",
            "expected a 0x-prefixed 32-byte transaction hash",
        )
    })?;
    let row = state
        .facilitator
        .settlement_by_tx(hash, &client.0.client_id)
        .await?;
    Ok(super::data(settlement_body(row)))
}

/// `GET /settlements?network=&payer=&nonce=[&asset=]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationQuery {
    /// v1 name or CAIP-2 id.
    pub network: String,
    pub payer: String,
    /// The EIP-3009 authorization nonce (0x + 64 hex).
    pub nonce: String,
    /// The token; needed only when one authorization nonce was used on several assets.
    pub asset: Option<String>,
}

/// A client's own settlement found by its authorization, for a resource server that lost the
/// answer of a settle (a timeout, a crash) and must learn the outcome without settling again.
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
    let network = x402::network::parse_network(query.network.trim())
        .ok_or_else(|| bad("network: not a known network (v1 name or CAIP-2 id)"))?;
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
    Ok(super::data(settlement_body(row)))
}
