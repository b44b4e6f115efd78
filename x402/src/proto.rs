//! Wire types of x402 v1 and v2 (the facilitator's `/verify` and `/settle` bodies) and their
//! normalisation into one `PaymentRequest`.
//!
//! Malformed bodies (wrong shape or types) are `RequestError`s: the server answers 400.
//! Anything a well-formed body can get wrong at the protocol level (scheme, network, amounts,
//! signature...) is kept in the `PaymentRequest` for the checks to judge with a `Reason`.

use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::batch_settlement::wire::{ChannelPayload, ChannelRequest, ChannelTerms};
use crate::permit2::{Kind as Permit2Kind, Permit2Payload, Permit2Request};
use crate::Reason;

mod responses;
pub use responses::{ReasonCode, SettleResponse, VerifyResponse};

/// The EIP-3009 authorization a buyer signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    pub from: Address,
    pub to: Address,
    #[serde(with = "decimal")]
    pub value: U256,
    #[serde(with = "decimal")]
    pub valid_after: U256,
    #[serde(with = "decimal")]
    pub valid_before: U256,
    pub nonce: B256,
}

/// `paymentPayload.payload` of the exact EVM scheme.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExactEvmPayload {
    pub signature: Bytes,
    pub authorization: Authorization,
}

/// Amounts are decimal strings of atomic units on the wire; numbers are accepted too.
pub(crate) mod decimal {
    use alloy_primitives::U256;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &U256, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => super::parse_amount(&s)
                .ok_or_else(|| D::Error::custom(format!("`{s}` is not a decimal amount"))),
            serde_json::Value::Number(n) if n.is_u64() => {
                Ok(U256::from(n.as_u64().unwrap_or_default()))
            }
            other => Err(D::Error::custom(format!(
                "expected a decimal string, got {other}"
            ))),
        }
    }
}

/// A non-negative decimal integer (no sign, no exponent, no fraction).
pub fn parse_amount(s: &str) -> Option<U256> {
    if s.is_empty() || s.len() > 78 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    U256::from_str_radix(s, 10).ok()
}

/// v1 and v2 wire types, for clients and for documentation.
pub mod v1 {
    use serde::{Deserialize, Serialize};
    use serde_json::Value;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct PaymentRequirements {
        pub scheme: String,
        pub network: String,
        pub max_amount_required: String,
        pub asset: String,
        pub pay_to: String,
        #[serde(default)]
        pub resource: String,
        #[serde(default)]
        pub description: String,
        #[serde(default)]
        pub mime_type: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub output_schema: Option<Value>,
        #[serde(default)]
        pub max_timeout_seconds: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub extra: Option<Value>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct PaymentPayload {
        pub x402_version: u8,
        pub scheme: String,
        pub network: String,
        pub payload: Value,
    }
}

pub mod v2 {
    use serde::{Deserialize, Serialize};
    use serde_json::Value;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct PaymentRequirements {
        pub scheme: String,
        pub network: String,
        pub amount: String,
        pub asset: String,
        pub pay_to: String,
        #[serde(default)]
        pub max_timeout_seconds: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub extra: Option<Value>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ResourceInfo {
        pub url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub description: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub mime_type: Option<String>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct PaymentPayload {
        pub x402_version: u8,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub resource: Option<ResourceInfo>,
        pub accepted: PaymentRequirements,
        pub payload: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub extensions: Option<Value>,
    }
}

/// v1: the authorized value must be at least the requirement; v2: exactly it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountRule {
    AtLeast,
    Exactly,
}

/// A `/verify` or `/settle` request, whatever its version.
#[derive(Debug, Clone)]
pub struct PaymentRequest {
    pub x402_version: u8,
    /// The requirements' scheme and network, as given.
    pub scheme: String,
    pub network: String,
    /// The payload's own scheme and network (v2: those of `accepted`).
    pub payload_scheme: String,
    pub payload_network: String,
    /// v2: `accepted` equals `paymentRequirements` on scheme, network, amount, asset, payTo.
    pub accepted_matches: bool,
    pub pay_to: Address,
    pub asset: Address,
    pub amount_required: U256,
    pub amount_rule: AmountRule,
    pub max_timeout_seconds: u64,
    /// `extra.name` / `extra.version`: the EIP-712 domain the buyer was told to sign.
    pub extra_name: Option<String>,
    pub extra_version: Option<String>,
    pub payload: ExactEvmPayload,
    /// v2 `payment-identifier` extension id.
    pub payment_id: Option<String>,
    /// False when a payment id was given but is not 16–128 chars of `[A-Za-z0-9_-]`.
    pub payment_id_valid: bool,
    /// A Permit2 payment (`permit2Authorization`): `payload` then holds its EIP-3009-shaped
    /// view (owner, recipient, amount, validity, nonce) for the ledger and the answers.
    pub permit2: Option<Permit2Request>,
    /// A payment on an SVM network (`crate::svm`): its requirements' Solana addresses and the
    /// buyer's partially signed transaction. `pay_to`/`asset` above are then zero and `payload`
    /// an empty authorization: the SVM path reads this instead.
    pub svm: Option<SvmRequest>,
    /// A `batch-settlement` payment (payment channels): `payload` then holds its EIP-3009-shaped
    /// view (`ChannelRequest::exact_view`) for the ledger and the answers.
    pub channel: Option<ChannelRequest>,
    /// keccak256 of a canonical encoding of everything above: equal requests, equal hashes.
    pub request_hash: B256,
}

/// The SVM side of a request: `paymentRequirements.payTo`/`asset`/`extra` as Solana reads
/// them, and `paymentPayload.payload.transaction` (base64 of a serialized, partially signed
/// transaction), decoded from base64 only: whether it is a transaction is the checks' to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvmRequest {
    /// payTo, base58.
    pub pay_to: String,
    /// The mint, base58.
    pub asset: String,
    /// `extra.feePayer`: the facilitator's fee payer the buyer built the transaction for.
    pub fee_payer: Option<String>,
    /// `extra.memo`: when given, the transaction's one memo must say exactly this.
    pub memo: Option<String>,
    /// The transaction's bytes.
    pub transaction: Vec<u8>,
    /// The required amount, atomic units (Solana amounts are u64; a larger requirement is
    /// `None` and no transfer can match it).
    pub amount: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is not a facilitator request (400 `INVALID_REQUEST`).
    #[error("{0}")]
    Malformed(String),
    /// The signed payload cannot be decoded (400 `INVALID_PAYLOAD`).
    #[error("{0}")]
    BadPayload(String),
    /// Well-formed, but a protocol version this facilitator does not speak (200, invalid).
    #[error("{0}")]
    Unsupported(Reason),
}

fn malformed(m: impl Into<String>) -> RequestError {
    RequestError::Malformed(m.into())
}

fn field<'a>(obj: &'a Value, name: &str, ctx: &str) -> Result<&'a Value, RequestError> {
    obj.get(name)
        .ok_or_else(|| malformed(format!("{ctx}.{name} is required")))
}

fn string(obj: &Value, name: &str, ctx: &str) -> Result<String, RequestError> {
    field(obj, name, ctx)?
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| malformed(format!("{ctx}.{name} must be a string")))
}

fn address(obj: &Value, name: &str, ctx: &str) -> Result<Address, RequestError> {
    string(obj, name, ctx)?.parse().map_err(|_| {
        malformed(format!(
            "{ctx}.{name} must be a 0x-prefixed 20-byte address"
        ))
    })
}

fn amount(obj: &Value, name: &str, ctx: &str) -> Result<U256, RequestError> {
    let v = field(obj, name, ctx)?;
    let parsed = match v {
        Value::String(s) => parse_amount(s),
        Value::Number(n) => n.as_u64().map(U256::from),
        _ => None,
    };
    parsed.ok_or_else(|| {
        malformed(format!(
            "{ctx}.{name} must be a decimal amount in atomic units"
        ))
    })
}

fn extra_str(obj: &Value, key: &str) -> Option<String> {
    obj.get("extra")?.get(key)?.as_str().map(str::to_owned)
}

/// `paymentPayload.payload`: an object, or base64 of its JSON.
fn payload_object(raw: &Value) -> Result<Value, RequestError> {
    let bad = |m: String| RequestError::BadPayload(m);
    let value = match raw {
        Value::Object(_) => raw.clone(),
        Value::String(s) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim()))
                .map_err(|_| bad("paymentPayload.payload is not base64".into()))?;
            serde_json::from_slice(&bytes)
                .map_err(|_| bad("paymentPayload.payload is not base64 of a JSON object".into()))?
        }
        _ => {
            return Err(bad(
                "paymentPayload.payload must be an object or a base64 string".into(),
            ))
        }
    };
    Ok(value)
}

fn exact_payload(value: Value) -> Result<ExactEvmPayload, RequestError> {
    serde_json::from_value(value)
        .map_err(|e| RequestError::BadPayload(format!("paymentPayload.payload: {e}")))
}

/// A Permit2 payload (`permit2Authorization`), with the `eip2612GasSponsoring` extension if
/// the payload carries one, and the EIP-3009-shaped view of it the ledger keys on: owner,
/// recipient, amount, `validAfter`, deadline as `validBefore`, the Permit2 nonce as 32 bytes.
fn permit2_payload(
    value: Value,
    scheme: &str,
    payload: &Value,
    amount_required: U256,
) -> Result<(ExactEvmPayload, Permit2Request), RequestError> {
    let p: Permit2Payload = serde_json::from_value(value)
        .map_err(|e| RequestError::BadPayload(format!("paymentPayload.payload: {e}")))?;
    let kind = if scheme == "upto" {
        Permit2Kind::Upto
    } else {
        Permit2Kind::Exact
    };
    let sponsoring = payload
        .get("extensions")
        .and_then(|e| e.get(crate::permit2::EIP2612_GAS_SPONSORING))
        .and_then(|e| e.get("info"))
        .map(|info| serde_json::from_value(info.clone()).map_err(|e| e.to_string()));
    let a = &p.permit2_authorization;
    let value = match kind {
        Permit2Kind::Exact => a.permitted.amount,
        Permit2Kind::Upto => amount_required,
    };
    let exact = ExactEvmPayload {
        signature: p.signature.clone(),
        authorization: Authorization {
            from: a.from,
            to: a.witness.to,
            value,
            valid_after: a.witness.valid_after,
            valid_before: a.deadline,
            nonce: B256::from(a.nonce),
        },
    };
    Ok((
        exact,
        Permit2Request {
            kind,
            payload: p,
            sponsoring,
        },
    ))
}

/// A `batch-settlement` payload (`type`: deposit, voucher, refund, claim, settle) with the
/// requirements' channel terms.
fn channel_payload(
    value: Value,
    requirements: &Value,
    payment: &Value,
) -> Result<ChannelRequest, RequestError> {
    let payload: ChannelPayload = serde_json::from_value(value)
        .map_err(|e| RequestError::BadPayload(format!("paymentPayload.payload: {e}")))?;
    let sponsoring = payment
        .get("extensions")
        .and_then(|e| e.get(crate::permit2::EIP2612_GAS_SPONSORING))
        .and_then(|e| e.get("info"))
        .map(|info| serde_json::from_value(info.clone()).map_err(|e| e.to_string()));
    Ok(ChannelRequest {
        payload,
        terms: ChannelTerms::from_requirements(requirements),
        sponsoring,
    })
}

fn valid_payment_id(id: &str) -> bool {
    (16..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Read a whole `/verify` or `/settle` body.
pub fn parse_facilitator_request(body: &Value) -> Result<PaymentRequest, RequestError> {
    if !body.is_object() {
        return Err(malformed("the body must be a JSON object"));
    }
    let payload = field(body, "paymentPayload", "body")?;
    let requirements = field(body, "paymentRequirements", "body")?;
    if !payload.is_object() || !requirements.is_object() {
        return Err(malformed(
            "paymentPayload and paymentRequirements must be objects",
        ));
    }
    let version = body
        .get("x402Version")
        .or_else(|| payload.get("x402Version"))
        .ok_or_else(|| malformed("x402Version is required"))?
        .as_u64()
        .ok_or_else(|| malformed("x402Version must be a number"))?;
    let req = "paymentRequirements";
    let (payload_scheme, payload_network, accepted_matches, amount_required, amount_rule) =
        match version {
            1 => (
                string(payload, "scheme", "paymentPayload")?,
                string(payload, "network", "paymentPayload")?,
                true,
                amount(requirements, "maxAmountRequired", req)?,
                AmountRule::AtLeast,
            ),
            2 => {
                let accepted = field(payload, "accepted", "paymentPayload")?;
                let required = amount(requirements, "amount", req)?;
                let same_str = |k: &str| {
                    accepted.get(k).and_then(Value::as_str)
                        == requirements.get(k).and_then(Value::as_str)
                };
                // EVM addresses compare as addresses (any case); others (Solana's base58,
                // case-sensitive) as they are written.
                let same_addr = |k: &str| {
                    let a = accepted.get(k).and_then(Value::as_str).map(str::trim);
                    let b = requirements.get(k).and_then(Value::as_str).map(str::trim);
                    match (a, b) {
                        (Some(a), Some(b)) => match (a.parse::<Address>(), b.parse::<Address>()) {
                            (Ok(x), Ok(y)) => x == y,
                            (Err(_), Err(_)) => !a.is_empty() && a == b,
                            _ => false,
                        },
                        _ => false,
                    }
                };
                // `upto` settles the amount the resource server used: at `/settle` the
                // requirements carry it, `accepted` the signed maximum.
                let upto = requirements.get("scheme").and_then(Value::as_str) == Some("upto");
                let same_amount = upto
                    || amount(accepted, "amount", "paymentPayload.accepted").ok() == Some(required);
                (
                    string(accepted, "scheme", "paymentPayload.accepted")?,
                    string(accepted, "network", "paymentPayload.accepted")?,
                    same_str("scheme")
                        && same_str("network")
                        && same_amount
                        && same_addr("asset")
                        && same_addr("payTo"),
                    required,
                    AmountRule::Exactly,
                )
            }
            _ => return Err(RequestError::Unsupported(Reason::InvalidX402Version)),
        };
    let network = string(requirements, "network", req)?;
    let raw = payload_object(field(payload, "payload", "paymentPayload")?)?;
    // An SVM payment: a Solana network and a transaction. An EVM-shaped payload naming a
    // Solana network is read as EVM, whose checks answer `invalid_network`.
    let svm_network = crate::svm::is_svm(&network) || crate::svm::is_svm(&payload_network);
    if svm_network && raw.get("transaction").is_some() {
        let svm = svm_request(requirements, &raw, amount_required)?;
        return Ok(finish(
            PaymentRequest {
                x402_version: version as u8,
                scheme: string(requirements, "scheme", req)?,
                network,
                payload_scheme,
                payload_network,
                accepted_matches,
                pay_to: Address::ZERO,
                asset: Address::ZERO,
                amount_required,
                amount_rule,
                max_timeout_seconds: max_timeout(requirements),
                extra_name: None,
                extra_version: None,
                payment_id_valid: true,
                payment_id: None,
                payload: ExactEvmPayload {
                    signature: Bytes::new(),
                    authorization: Authorization {
                        from: Address::ZERO,
                        to: Address::ZERO,
                        value: amount_required,
                        valid_after: U256::ZERO,
                        valid_before: U256::ZERO,
                        nonce: B256::ZERO,
                    },
                },
                permit2: None,
                svm: Some(svm),
                channel: None,
                request_hash: B256::ZERO,
            },
            payload,
        ));
    }
    let mut channel = None;
    let (exact, permit2) = if payload_scheme == crate::batch_settlement::SCHEME {
        let c = channel_payload(raw, requirements, payload)?;
        let exact = c.exact_view();
        channel = Some(c);
        (exact, None)
    } else if raw.get("permit2Authorization").is_some() {
        let (exact, p) = permit2_payload(raw, &payload_scheme, payload, amount_required)?;
        (exact, Some(p))
    } else {
        (exact_payload(raw)?, None)
    };
    let request = PaymentRequest {
        x402_version: version as u8,
        scheme: string(requirements, "scheme", req)?,
        network,
        payload_scheme,
        payload_network,
        accepted_matches,
        pay_to: address(requirements, "payTo", req)?,
        asset: address(requirements, "asset", req)?,
        amount_required,
        amount_rule,
        max_timeout_seconds: max_timeout(requirements),
        extra_name: extra_str(requirements, "name"),
        extra_version: extra_str(requirements, "version"),
        payment_id_valid: true,
        payment_id: None,
        payload: exact,
        permit2,
        svm: None,
        channel,
        request_hash: B256::ZERO,
    };
    Ok(finish(request, payload))
}

fn max_timeout(requirements: &Value) -> u64 {
    requirements
        .get("maxTimeoutSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The v2 `payment-identifier` id and the request's hash.
fn finish(mut request: PaymentRequest, payload: &Value) -> PaymentRequest {
    let payment_id = payload
        .get("extensions")
        .and_then(|e| e.get("payment-identifier"))
        .and_then(|p| p.get("info"))
        .and_then(|i| i.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    request.payment_id_valid = payment_id.as_deref().is_none_or(valid_payment_id);
    request.payment_id = payment_id;
    request.request_hash = canonical_hash(&request);
    request
}

/// An SVM request's Solana side. `payTo` and `asset` must be base58 addresses (else 400, as
/// a malformed EVM address is); the payload must be `{transaction: <base64>}` (else 400
/// `INVALID_PAYLOAD`); whether those bytes are a transaction is for the checks to say.
fn svm_request(
    requirements: &Value,
    raw: &Value,
    amount_required: U256,
) -> Result<SvmRequest, RequestError> {
    let ctx = "paymentRequirements";
    let pubkey = |name: &str| -> Result<String, RequestError> {
        let s = string(requirements, name, ctx)?;
        crate::svm::parse_pubkey(&s)
            .map(|_| s.trim().to_owned())
            .ok_or_else(|| malformed(format!("{ctx}.{name} must be a base58 Solana address")))
    };
    let bad = |m: &str| RequestError::BadPayload(m.to_owned());
    let tx = raw
        .get("transaction")
        .ok_or_else(|| bad("paymentPayload.payload.transaction is required"))?
        .as_str()
        .ok_or_else(|| bad("paymentPayload.payload.transaction must be a base64 string"))?;
    // A Solana transaction is at most 1232 bytes; a payload far beyond is no payment.
    if tx.len() > 4096 {
        return Err(bad("paymentPayload.payload.transaction is too long"));
    }
    let transaction = base64::engine::general_purpose::STANDARD
        .decode(tx.trim())
        .map_err(|_| bad("paymentPayload.payload.transaction is not base64"))?;
    Ok(SvmRequest {
        pay_to: pubkey("payTo")?,
        asset: pubkey("asset")?,
        fee_payer: extra_str(requirements, "feePayer"),
        memo: extra_str(requirements, "memo"),
        transaction,
        amount: u64::try_from(amount_required).ok(),
    })
}

/// A stable encoding of what makes a request what it is (field order fixed, addresses and
/// amounts normalised), so that two byte-different JSON bodies of one payment hash equally.
fn canonical_hash(r: &PaymentRequest) -> B256 {
    let a = &r.payload.authorization;
    let canonical = serde_json::json!([
        r.x402_version,
        r.scheme,
        r.network,
        r.payload_scheme,
        r.payload_network,
        r.accepted_matches,
        r.pay_to,
        r.asset,
        r.amount_required.to_string(),
        r.extra_name,
        r.extra_version,
        a.from,
        a.to,
        a.value.to_string(),
        a.valid_after.to_string(),
        a.valid_before.to_string(),
        a.nonce,
        r.payload.signature,
        r.payment_id,
        r.permit2.as_ref().map(|p| (
            &p.payload.permit2_authorization,
            p.sponsoring.as_ref().map(|s| s.as_ref().ok()),
        )),
        r.svm.as_ref().map(|s| (
            &s.pay_to,
            &s.asset,
            &s.fee_payer,
            &s.memo,
            base64::engine::general_purpose::STANDARD.encode(&s.transaction),
        )),
        r.channel.as_ref().map(|c| (
            &c.payload,
            c.terms.receiver_authorizer,
            c.terms.withdraw_delay
        )),
    ]);
    keccak256(canonical.to_string().as_bytes())
}

#[cfg(test)]
mod tests;
