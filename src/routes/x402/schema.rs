//! The request bodies of `/verify` and `/settle`, described for the OpenAPI document: the
//! handlers read them as `serde_json::Value` and parse them with `x402::proto` (which takes
//! both protocol versions, and a payload as an object or as base64), so these types only
//! document them. The answers are the real `x402::proto` types.

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};
use utoipa::ToSchema;

/// A whole number the server reads as `u64`: no `int64` format, which would bound it at
/// `i64::MAX`.
fn unsigned() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .build()
}

fn unsigned_or_null() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
        .minimum(Some(0))
        .build()
}

/// `extra` of the exact EVM scheme: the token's EIP-712 domain.
#[derive(Serialize, ToSchema)]
pub struct RequirementsExtra {
    #[schema(example = "USDC")]
    pub name: Option<String>,
    #[schema(example = "2")]
    pub version: Option<String>,
}

/// What a resource server asks to be paid. x402 v1 states the amount as
/// `maxAmountRequired`, v2 as `amount` (atomic units, decimal strings).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    #[schema(example = "exact")]
    pub scheme: String,
    #[schema(example = "base-sepolia")]
    pub network: String,
    /// x402 v1: the amount required.
    #[schema(example = "1000000")]
    pub max_amount_required: Option<String>,
    /// x402 v2: the amount required.
    pub amount: Option<String>,
    #[schema(example = "/api/protected")]
    pub resource: Option<String>,
    pub description: Option<String>,
    #[schema(example = "application/json")]
    pub mime_type: Option<String>,
    #[schema(example = "0x2222222222222222222222222222222222222222")]
    pub pay_to: String,
    #[schema(example = 60, schema_with = unsigned_or_null)]
    pub max_timeout_seconds: Option<u64>,
    #[schema(example = "0x036CbD53842c5426634e7929541eC2318f3dCF7e")]
    pub asset: String,
    pub extra: Option<RequirementsExtra>,
    /// The resource's input and output schemas (x402 v1), if advertised.
    pub output_schema: Option<Value>,
}

/// The EIP-3009 `transferWithAuthorization` the payer signed.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferAuthorization {
    pub from: String,
    pub to: String,
    /// Atomic units, decimal string.
    #[schema(example = "1000000")]
    pub value: String,
    /// Unix seconds, decimal string.
    pub valid_after: String,
    /// Unix seconds, decimal string.
    pub valid_before: String,
    /// 32 bytes, 0x-hex.
    pub nonce: String,
}

/// The signed payload of the exact EVM scheme.
#[derive(Serialize, ToSchema)]
pub struct ExactEvmPayload {
    /// 0x-hex signature (65 bytes, or ERC-1271 / ERC-6492 wrapped).
    pub signature: String,
    pub authorization: TransferAuthorization,
}

/// `paymentPayload.payload`: the signed payload as a JSON object, or base64 of it.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum SignedPayload {
    Base64(String),
    Object(ExactEvmPayload),
}

/// The payer's signed payment. x402 v1 carries `scheme` and `network`; v2 carries
/// `accepted` (the requirements it pays) and may carry `extensions`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    /// The protocol version (when the body has no `x402Version`).
    #[schema(schema_with = unsigned)]
    pub x402_version: Option<u64>,
    /// x402 v1.
    #[schema(example = "exact")]
    pub scheme: Option<String>,
    /// x402 v1.
    #[schema(example = "base-sepolia")]
    pub network: Option<String>,
    /// x402 v2.
    pub accepted: Option<PaymentRequirements>,
    pub payload: SignedPayload,
    /// x402 v2 extensions (e.g. `payment-identifier`).
    pub extensions: Option<Value>,
}

/// The body of `POST /api/v1/verify` and `POST /api/v1/settle`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequest {
    /// 1 or 2 (another version is answered `invalid_x402_version`); defaults to
    /// `paymentPayload.x402Version`.
    #[schema(schema_with = unsigned)]
    pub x402_version: Option<u64>,
    pub payment_payload: PaymentPayload,
    pub payment_requirements: PaymentRequirements,
}
