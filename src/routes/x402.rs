//! The x402 core endpoints, authenticated by client key: `/supported`, `/verify`, `/settle`,
//! and `/settlements/{tx}` to resolve a settlement that answered `settlement_pending`.
//!
//! Protocol outcomes (`isValid: false`, `success: false`) are HTTP 200 with the reason, as the
//! x402 reference facilitator answers; 400 only for a body that cannot be read as a payment.

use actix_web::{web, HttpResponse};
use alloy_primitives::B256;
use facilitator_actors::facilitator::{Caller, SettleAnswer, VerifyAnswer};
use facilitator_actors::ServiceError;
use serde_json::{json, Value};
use x402::proto::{parse_facilitator_request, PaymentRequest, RequestError};
use x402::Reason;

use facilitator_actors::metrics::{Operation, X402Event, SUCCESS, SUCCESS_REPEAT};

use super::networks::supported_body;
use crate::auth::Client;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::startup::AppState;

/// Same body as `/networks`, behind client auth: any active key may ask (it is how a merchant
/// checks that its key works), whatever its scope. A key limited to some networks sees only
/// those.
pub async fn supported(state: web::Data<AppState>, client: Client) -> HttpResponse {
    let mut body = supported_body(&state.registry);
    if let Some(kinds) = body["kinds"].as_array_mut() {
        kinds.retain(|k| {
            k["network"]
                .as_str()
                .is_some_and(|n| client.0.allows_network(n))
        });
    }
    HttpResponse::Ok().json(body)
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
    /// This call mined the settlement's transaction (else a success is a repeat).
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
            // A settle success whose transaction this call did not mine: a repeat.
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
            return Ok(HttpResponse::Ok().json(verify_body(&VerifyAnswer::rejected(reason))));
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
    Ok(HttpResponse::Ok().json(verify_body(&answer)))
}

pub async fn settle(
    state: web::Data<AppState>,
    client: Client,
    body: web::Json<Value>,
) -> ApiResult<HttpResponse> {
    let started = std::time::Instant::now();
    client.require("settle")?;
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
            return Ok(HttpResponse::Ok().json(settle_body(network, &answer)));
        }
    };
    let answer = state
        .facilitator
        .settle(
            &req,
            Some(Caller {
                client_id: &client.0.client_id,
                credits_limited: client.0.credits_limited,
            }),
        )
        .await
        .map_err(|e| match e {
            // No settle credits left: the key's problem, not the service's.
            ServiceError::Forbidden(_) => ApiError::from(e),
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
    Ok(HttpResponse::Ok().json(settle_body(&req.network, &answer)))
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
    Ok(super::data(json!({
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
    })))
}
