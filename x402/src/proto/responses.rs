//! The facilitator's answers to `/verify` and `/settle` (x402 `VerifyResponse` and
//! `SettleResponse`), as sent and as documented (with the `openapi` feature).

use serde::{Deserialize, Serialize};

use crate::Reason;

/// A reason on the wire: an x402 reason code, or the empty string when there is none (the
/// reference facilitators answer `invalidReason: ""` / `errorReason: ""` on success).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReasonCode(pub Option<Reason>);

impl Serialize for ReasonCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.map(Reason::as_str).unwrap_or(""))
    }
}

impl<'de> Deserialize<'de> for ReasonCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Ok(Self(None));
        }
        Reason::parse(&s)
            .map(|r| Self(Some(r)))
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is no x402 reason")))
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ReasonCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let reasons = std::iter::once("").chain(Reason::ALL.iter().map(|r| r.as_str()));
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "An x402 reason code, or the empty string when there is none.",
            ))
            .enum_values(Some(reasons))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ReasonCode {
    fn name() -> std::borrow::Cow<'static, str> {
        "Reason".into()
    }
}

// The answers below list their fields in alphabetical order of their wire names: that is the
// order this facilitator has always sent them in (they were built as `serde_json` maps, which
// sort their keys), and clients that compare answers byte for byte keep working.

/// The answer of `/verify` (bare). An invalid payment is a 200 with `isValid: false`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    /// True when this exact request was verified before and the answer is replayed.
    pub cached_result: bool,
    /// Scheme-specific details: for `batch-settlement`, the channel snapshot (`channelId`,
    /// `balance`, `totalClaimed`, `withdrawRequestedAt`, `refundNonce`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub extra: Option<serde_json::Value>,
    /// A human explanation of `invalidReason`, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_message: Option<String>,
    pub invalid_reason: ReasonCode,
    pub is_valid: bool,
    /// The payer's address, when known; else empty.
    pub payer: String,
    /// Unix seconds.
    #[cfg_attr(feature = "openapi", schema(example = 1712345678))]
    pub timestamp: i64,
}

/// The answer of `/settle` (bare). A refused or reverted settlement is a 200 with
/// `success: false`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    /// Amount transferred, atomic units.
    #[cfg_attr(feature = "openapi", schema(example = "1000000"))]
    pub amount: String,
    pub block_number: u64,
    /// A human explanation of `errorReason`, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    pub error_reason: ReasonCode,
    /// Scheme-specific details: for `batch-settlement`, `channelState` (the channel snapshot
    /// after the settlement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub extra: Option<serde_json::Value>,
    // The network as the request named it (a v1 name or a CAIP-2 id).
    #[cfg_attr(feature = "openapi", schema(example = "base-sepolia"))]
    pub network: String,
    pub payer: String,
    pub success: bool,
    /// RFC 3339.
    // Whole seconds, `Z`: the form this facilitator has always sent.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, format = DateTime, example = "2025-04-07T12:00:00Z")
    )]
    pub timestamp: String,
    /// Transaction hash; empty when nothing was sent.
    pub transaction: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(reason: Option<Reason>) -> VerifyResponse {
        VerifyResponse {
            cached_result: false,
            extra: None,
            invalid_message: reason.map(|r| r.message().to_owned()),
            invalid_reason: ReasonCode(reason),
            is_valid: reason.is_none(),
            payer: String::new(),
            timestamp: 1,
        }
    }

    fn settle(reason: Option<Reason>) -> SettleResponse {
        SettleResponse {
            amount: "1".into(),
            block_number: 0,
            extra: None,
            error_message: reason.map(|r| r.message().to_owned()),
            error_reason: ReasonCode(reason),
            network: "eip155:84532".into(),
            payer: String::new(),
            success: reason.is_none(),
            timestamp: "2025-04-07T12:00:00Z".into(),
            transaction: String::new(),
        }
    }

    /// The bytes sent are those of a `serde_json` map of the same fields: keys sorted.
    fn sorted<T: Serialize>(answer: &T) -> String {
        serde_json::to_value(answer).unwrap().to_string()
    }

    #[test]
    fn answers_keep_their_keys_in_alphabetical_order() {
        for reason in [None, Some(Reason::InsufficientFunds)] {
            let v = verify(reason);
            assert_eq!(serde_json::to_string(&v).unwrap(), sorted(&v));
            let s = settle(reason);
            assert_eq!(serde_json::to_string(&s).unwrap(), sorted(&s));
        }
    }

    #[test]
    fn no_reason_is_an_empty_string_and_no_message() {
        let body = serde_json::to_value(verify(None)).unwrap();
        assert_eq!(body["invalidReason"], "");
        assert!(body.get("invalidMessage").is_none());
        let body = serde_json::to_value(settle(Some(Reason::InvalidNetwork))).unwrap();
        assert_eq!(body["errorReason"], "invalid_network");
        assert_eq!(body["errorMessage"], Reason::InvalidNetwork.message());
        let back: SettleResponse = serde_json::from_value(body).unwrap();
        assert_eq!(back, settle(Some(Reason::InvalidNetwork)));
    }
}
