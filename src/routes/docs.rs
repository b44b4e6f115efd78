//! The OpenAPI 3 document (`/openapi.json`) and the interactive docs (`/docs`).
//!
//! The document is generated from this file: [`operations`] is a table keyed by
//! `(method, path)` with, for every route of [`super::registered`], its summary, tag,
//! parameters, request body, success body, error statuses and credentials. Request and response
//! bodies are the `ToSchema` types of [`schema`], which mirror the wire JSON field by field. A
//! unit test fails when the table and the router disagree in either direction, so a new route
//! cannot ship undocumented.
//!
//! `/docs` is Swagger UI, its files embedded in the binary (`utoipa-swagger-ui`, `vendored`):
//! nothing is fetched from another host, so the docs work offline.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use actix_web::http::header::{self, ContentType};
use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{
    ArrayBuilder, ComponentsBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type,
};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, RefOr, Required,
    ResponseBuilder, Schema,
};
use utoipa::{PartialSchema, ToSchema};
use utoipa_swagger_ui::{Config, SwaggerUi};

/// Where the document is served (registered by `super::configure`, like every route).
pub const OPENAPI_PATH: &str = "/openapi.json";
/// The content type of `/metrics`.
pub const PROMETHEUS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Where Swagger UI is served.
pub const DOCS_PATH: &str = "/docs";

/// The document, built and serialized once.
static OPENAPI_JSON: LazyLock<String> =
    LazyLock::new(|| serde_json::to_string(&openapi()).expect("the OpenAPI document serializes"));

/// `GET /openapi.json`.
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(OPENAPI_JSON.as_str())
}

/// `GET /docs` sends the browser to `/docs/`, where Swagger UI's relative asset links resolve.
async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        // Relative, so that it also works behind a proxy that mounts us under a prefix.
        .insert_header((header::LOCATION, "docs/"))
        .finish()
}

/// Swagger UI at `/docs/` (its HTML, JS and CSS come from the binary), reading
/// `/openapi.json`. The UI is given a URL only, so it registers no document route of its own.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource(DOCS_PATH).route(web::get().to(docs_redirect)));
    let ui = Config::from(OPENAPI_PATH)
        // Swagger UI's default validator badge loads an image from validator.swagger.io.
        .validator_url("none")
        .persist_authorization(true)
        .display_request_duration(true)
        .filter(true);
    cfg.service(SwaggerUi::new(format!("{DOCS_PATH}/{{_:.*}}")).config(ui));
}

// ---------------------------------------------------------------------------------------------
// Credentials.

/// Security scheme names, as they appear in `components.securitySchemes`.
pub const BEARER_AUTH: &str = "bearerAuth";
pub const ADMIN_TOKEN: &str = "adminToken";
pub const CLIENT_ID: &str = "clientId";
pub const CLIENT_TOKEN: &str = "clientToken";
pub const METRICS_TOKEN: &str = "metricsToken";

/// The credentials an operation takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    Public,
    /// A user's access token (`Authorization: Bearer <jwt>`).
    User,
    /// The static admin token (`Authorization: Bearer <admin_token>`).
    Admin,
    /// A client key: `X-Client-ID` and `X-Client-Token`, both.
    Client,
    /// The Prometheus scrape token, when one is configured (else none).
    Scrape,
}

impl Auth {
    fn requirements(self) -> Option<Vec<SecurityRequirement>> {
        let none: [&str; 0] = [];
        match self {
            Auth::Public => None,
            Auth::User => Some(vec![SecurityRequirement::new(BEARER_AUTH, none)]),
            Auth::Admin => Some(vec![SecurityRequirement::new(ADMIN_TOKEN, none)]),
            // One requirement naming both schemes: both headers are needed together.
            Auth::Client => Some(vec![
                SecurityRequirement::new(CLIENT_ID, none).add(CLIENT_TOKEN, none)
            ]),
            // Either the token, or nothing (when the server has no scrape token configured).
            Auth::Scrape => Some(vec![
                SecurityRequirement::new(METRICS_TOKEN, none),
                SecurityRequirement::default(),
            ]),
        }
    }

    fn needs_credentials(self) -> bool {
        matches!(self, Auth::User | Auth::Admin | Auth::Client)
    }
}

fn security_schemes(components: ComponentsBuilder) -> ComponentsBuilder {
    let bearer = |format: &str, description: &str| {
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format(format)
                .description(Some(description))
                .build(),
        )
    };
    components
        .security_scheme(
            BEARER_AUTH,
            bearer(
                "JWT",
                "A user's access token, from `POST /api/v1/login` or `POST /api/v1/token/refresh`: \
                 `Authorization: Bearer <access_token>`.",
            ),
        )
        .security_scheme(
            ADMIN_TOKEN,
            bearer(
                "static token",
                "The operator's static admin token (`auth.admin_token` in the configuration), \
                 for `/admin/*`: `Authorization: Bearer <admin_token>`.",
            ),
        )
        .security_scheme(
            CLIENT_ID,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Client-ID",
                "The `clientId` of a client key (`POST /api/v1/clients`). Sent together with \
                 `X-Client-Token`.",
            ))),
        )
        .security_scheme(
            CLIENT_TOKEN,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Client-Token",
                "The `token` of a client key, shown once when the key is created. Sent together \
                 with `X-Client-ID`.",
            ))),
        )
        .security_scheme(
            METRICS_TOKEN,
            bearer(
                "static token",
                "The Prometheus scrape token (`metrics.prometheus_token`), when the server has \
                 one configured: `Authorization: Bearer <token>`. Without one, `/metrics` \
                 answers loopback clients only.",
            ),
        )
}

// ---------------------------------------------------------------------------------------------
// Wire types.

/// The JSON bodies of the API, as `ToSchema` types. Field names and casing are the wire's
/// (most are camelCase; the session tokens and a few request fields are snake_case).
pub mod schema {
    use std::collections::BTreeMap;

    use chrono::{DateTime, NaiveDate, Utc};
    use serde::Serialize;
    use serde_json::Value;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{RefOr, Schema};
    use utoipa::{PartialSchema, ToSchema};

    /// The envelope and its codes are the server's own types (src/error.rs).
    pub use crate::error::{ApiError, ErrorCode};

    /// `GET /health` (bare, no envelope).
    #[derive(Serialize, ToSchema)]
    pub struct Health {
        #[schema(example = "healthy")]
        pub status: String,
        /// Unix seconds.
        #[schema(example = 1712345678)]
        pub timestamp: i64,
        #[schema(example = "0.1.0")]
        pub version: String,
    }

    /// `active`: every RPC endpoint is healthy; `degraded`: some are; `down`: none is.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum NetworkStatus {
        Active,
        Degraded,
        Down,
    }

    /// `unhealthy`: its last call or probe failed (skipped while another endpoint is
    /// healthy); `lagging`: its head is behind the best endpoint's.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum RpcEndpointStatus {
        Healthy,
        Unhealthy,
        Lagging,
    }

    /// One RPC endpoint of a network.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct RpcEndpoint {
        /// Scheme, host and port only: path and query (where API keys live) are elided.
        #[schema(example = "https://base-sepolia.g.alchemy.com/…")]
        pub url: String,
        pub status: RpcEndpointStatus,
        /// The latest block it reported to the health probe.
        pub block: Option<u64>,
        /// Smoothed latency of its answers, milliseconds.
        pub latency_ms: Option<f64>,
        /// Attempts sent to it (calls and probes).
        pub requests: u64,
        /// Attempts that failed (no answer in time, connection or HTTP error).
        pub errors: u64,
        pub last_error: Option<String>,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct FeePayerExtra {
        /// The address that pays gas for settlements on this network.
        pub fee_payer: String,
    }

    /// A payment kind served: one network under one x402 version (v1 uses network names,
    /// v2 CAIP-2 identifiers).
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct NetworkKind {
        #[schema(example = 1)]
        pub x402_version: u8,
        #[schema(example = "exact")]
        pub scheme: String,
        /// `base-sepolia` (x402 v1) or `eip155:84532` (x402 v2).
        #[schema(example = "base-sepolia")]
        pub network: String,
        pub status: NetworkStatus,
        /// Latest block of the network's healthy RPC endpoints (0 when none answers).
        pub block: u64,
        #[schema(example = "0x1111111111111111111111111111111111111111")]
        pub fee_payer: String,
        pub extra: FeePayerExtra,
        /// Seconds since that block's timestamp (the chain's clock); null when unknown.
        pub block_age_seconds: Option<u64>,
        /// The network's RPC endpoints in order of preference, with their health.
        pub rpc: Vec<RpcEndpoint>,
        /// `/api/v1/status` only: the network's signers as this instance sees them.
        pub signers: Option<Vec<SignerState>>,
    }

    /// A settlement signer of a network, as one instance sees it.
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
        /// Transactions of this signer awaiting their receipt here.
        pub in_flight: i64,
    }

    /// `GET /api/v1/networks` and `GET /api/v1/supported` (bare, no envelope): the kinds
    /// served, then the x402 `extensions` and `signers` (fee payer addresses by CAIP-2 family).
    #[derive(Serialize, ToSchema)]
    pub struct Supported {
        pub kinds: Vec<NetworkKind>,
        pub extensions: Vec<Value>,
        #[schema(example = json!({"eip155:*": ["0x1111111111111111111111111111111111111111"]}))]
        pub signers: BTreeMap<String, Vec<String>>,
    }

    #[derive(Serialize, ToSchema)]
    pub struct DatabaseStatus {
        /// `healthy` or `unhealthy`.
        #[schema(example = "healthy")]
        pub status: String,
        /// `sqlite` or `postgresql`.
        #[schema(example = "sqlite")]
        pub backend: String,
    }

    /// `GET /api/v1/status`.
    #[derive(Serialize, ToSchema)]
    pub struct SystemStatus {
        /// `healthy`, or `degraded` when the database does not answer or a network is not
        /// `active`.
        #[schema(example = "healthy")]
        pub status: String,
        #[schema(example = "0.1.0")]
        pub version: String,
        /// Seconds since start.
        pub uptime: u64,
        /// One kind per network (x402 v1 names).
        pub networks: Vec<NetworkKind>,
        pub database: DatabaseStatus,
    }

    /// `GET /ready`: the instance can serve.
    #[derive(Serialize, ToSchema)]
    pub struct Ready {
        #[schema(example = "ready")]
        pub status: String,
        #[schema(example = "healthy")]
        pub database: String,
        /// Every served network's status, by v1 name.
        #[schema(example = json!({"base-sepolia": "active"}))]
        pub networks: BTreeMap<String, NetworkStatus>,
    }

    /// A registered asset (token).
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct Asset {
        #[schema(example = 1)]
        pub id: i64,
        #[schema(example = "base-sepolia")]
        pub network: String,
        /// The token contract.
        #[schema(example = "0x036CbD53842c5426634e7929541eC2318f3dCF7e")]
        pub asset: String,
        #[schema(example = "USDC")]
        pub symbol: String,
        #[schema(example = 6)]
        pub decimals: i16,
        pub active: bool,
        /// EIP-712 domain name, when registered.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub eip712_name: Option<String>,
        /// EIP-712 domain version, when registered.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub eip712_version: Option<String>,
    }

    /// `POST /admin/assets`.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct NewAsset {
        /// v1 name or CAIP-2 id of a served network.
        #[schema(example = "base-sepolia")]
        pub network: String,
        /// The token contract, a 0x-prefixed 20-byte address.
        #[schema(example = "0x036CbD53842c5426634e7929541eC2318f3dCF7e")]
        pub asset: String,
        #[schema(example = "USDC")]
        pub symbol: String,
        #[schema(example = 6)]
        pub decimals: u8,
        /// Default `true`.
        #[schema(default = true)]
        pub active: Option<bool>,
        /// EIP-712 domain name (also accepted as `eip712_name`).
        pub eip712_name: Option<String>,
        /// EIP-712 domain version (also accepted as `eip712_version`).
        pub eip712_version: Option<String>,
    }

    // --- x402 ---

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
        #[schema(example = 60)]
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
        #[schema(example = 1)]
        pub x402_version: u8,
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

    /// `POST /api/v1/verify` and `POST /api/v1/settle`.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct PaymentRequest {
        /// 1 or 2; defaults to `paymentPayload.x402Version`.
        #[schema(example = 1)]
        pub x402_version: Option<u8>,
        pub payment_payload: PaymentPayload,
        pub payment_requirements: PaymentRequirements,
    }

    /// Why a payment was refused (x402 reason codes); empty when it was not.
    #[derive(Serialize)]
    pub struct Reason(pub String);

    impl PartialSchema for Reason {
        fn schema() -> RefOr<Schema> {
            let reasons = std::iter::once("").chain(x402::Reason::ALL.iter().map(|r| r.as_str()));
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "An x402 reason code, or the empty string when there is none.",
                ))
                .enum_values(Some(reasons))
                .into()
        }
    }

    impl ToSchema for Reason {}

    /// The answer of `/verify` (bare). An invalid payment is a 200 with `isValid: false`.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct VerifyResponse {
        pub is_valid: bool,
        pub invalid_reason: Reason,
        /// A human explanation of `invalidReason`, when there is one.
        pub invalid_message: Option<String>,
        /// The payer's address, when known; else empty.
        pub payer: String,
        /// Unix seconds.
        #[schema(example = 1712345678)]
        pub timestamp: i64,
        /// True when this exact request was verified before and the answer is replayed.
        pub cached_result: bool,
    }

    /// The answer of `/settle` (bare). A refused or reverted settlement is a 200 with
    /// `success: false`.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct SettleResponse {
        pub success: bool,
        /// Transaction hash; empty when nothing was sent.
        pub transaction: String,
        pub error_reason: Reason,
        /// A human explanation of `errorReason`, when there is one.
        pub error_message: Option<String>,
        #[schema(example = "base-sepolia")]
        pub network: String,
        pub payer: String,
        pub block_number: u64,
        /// RFC 3339.
        #[schema(example = "2025-04-07T12:00:00Z")]
        pub timestamp: DateTime<Utc>,
        /// Amount transferred, atomic units.
        #[schema(example = "1000000")]
        pub amount: String,
    }

    /// `GET /api/v1/settlements/{tx}`: a settlement of this client key, by transaction.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct Settlement {
        #[schema(required = true)]
        pub transaction: Option<String>,
        /// `pending`, `submitted`, `confirmed` or `failed`.
        #[schema(example = "confirmed")]
        pub status: String,
        /// `status == "confirmed"`.
        pub success: bool,
        pub error_reason: String,
        pub network: String,
        pub asset: String,
        pub payer: String,
        pub pay_to: String,
        pub amount: String,
        /// The EIP-3009 authorization nonce.
        pub nonce: String,
        pub block_number: i64,
        #[schema(required = true)]
        pub gas_used: Option<i64>,
        pub created_at: DateTime<Utc>,
        #[schema(required = true)]
        pub confirmed_at: Option<DateTime<Utc>>,
    }

    // --- accounts ---

    /// `POST /api/v1/signup` and `POST /api/v1/login`.
    #[derive(Serialize, ToSchema)]
    pub struct Credentials {
        #[schema(example = "user@example.com")]
        pub email: String,
        #[schema(example = "StrongPassword123!", format = Password)]
        pub password: String,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct User {
        #[schema(example = 1)]
        pub id: i64,
        #[schema(example = "user@example.com")]
        pub email: String,
        pub is_admin: bool,
        pub created_at: DateTime<Utc>,
    }

    /// A new account.
    #[derive(Serialize, ToSchema)]
    pub struct UserCreated {
        /// `Account created` (signup) or `User created` (admin).
        #[schema(example = "Account created")]
        pub message: String,
        pub user: User,
    }

    #[derive(Serialize, ToSchema)]
    pub struct LoginResponse {
        #[schema(example = "Login successful")]
        pub message: String,
        /// Access token (JWT) for `bearerAuth`.
        pub access_token: String,
        /// Refresh token for `POST /api/v1/token/refresh`.
        pub refresh_token: String,
        /// The user's id.
        pub id: i64,
    }

    #[derive(Serialize, ToSchema)]
    pub struct RefreshRequest {
        pub refresh_token: String,
    }

    /// Refresh tokens rotate: the one presented is spent, use the new one next time.
    #[derive(Serialize, ToSchema)]
    pub struct TokenPair {
        pub access_token: String,
        pub refresh_token: String,
    }

    /// `POST /admin/users`.
    #[derive(Serialize, ToSchema)]
    pub struct NewUser {
        #[schema(example = "newuser@example.com")]
        pub email: String,
        #[schema(format = Password)]
        pub password: String,
        /// Default `false`.
        #[schema(default = false)]
        pub is_admin: Option<bool>,
    }

    // --- client keys ---

    #[derive(Serialize, ToSchema)]
    pub struct NewClientKey {
        #[schema(example = "my-resource-server")]
        pub title: String,
        /// Comma-separated operations allowed (`verify`, `settle`); default all.
        #[schema(example = "verify,settle")]
        pub scope: Option<String>,
        /// Expiry in hours; omit for none.
        #[schema(example = 8760)]
        pub ttl_hours: Option<u64>,
        /// Networks the key may pay on (v1 names or CAIP-2); omit for all served networks.
        #[schema(example = json!(["base-sepolia"]))]
        pub networks: Option<Vec<String>>,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct ClientKey {
        #[schema(example = "abc123")]
        pub client_id: String,
        pub title: String,
        #[schema(example = "verify,settle")]
        pub scope: String,
        /// v1 network names the key is limited to; `null` = every served network.
        #[schema(required = true)]
        pub networks: Option<Vec<String>>,
        /// `active`, `paused` (by its owner), `revoked` or `expired`; only an active key
        /// authenticates.
        #[schema(example = "active")]
        pub status: String,
        /// Settlements the key may still make (each new authorization uses one; one that
        /// sends nothing gives it back); `null` = unlimited. Set by the operator.
        #[schema(required = true)]
        pub settle_credits: Option<i64>,
        /// This key's rate limit on `/verify`, `/settle`, `/supported` (requests per second,
        /// `0` = unlimited); `null` = the server's default. Set by the operator.
        #[schema(required = true)]
        pub rate_limit_per_second: Option<u32>,
        pub created_at: DateTime<Utc>,
        #[schema(required = true)]
        pub expires_at: Option<DateTime<Utc>>,
    }

    /// `PATCH /api/v1/clients/{id}`: any of these, at least one.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct ClientChange {
        pub title: Option<String>,
        #[schema(example = "verify")]
        pub scope: Option<String>,
        /// `null` = every network; a list = only those (v1 names or CAIP-2).
        pub networks: Option<Vec<String>>,
        /// `active` (resume) or `paused`.
        #[schema(example = "paused")]
        pub status: Option<String>,
        /// `true`: issue a new token (in this answer only); the old one stops working.
        pub rotate: Option<bool>,
    }

    /// A changed key; `token` only after a rotation (the only time it is shown).
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct ChangedClientKey {
        #[serde(flatten)]
        pub key: ClientKey,
        pub token: Option<String>,
    }

    #[derive(Serialize, ToSchema)]
    pub struct ClientChanged {
        pub client: ChangedClientKey,
    }

    /// A new key with its token: the only time the token is shown.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct IssuedClientKey {
        pub client_id: String,
        /// The secret for `X-Client-Token`.
        pub token: String,
        pub title: String,
        pub scope: String,
        #[schema(required = true)]
        pub networks: Option<Vec<String>>,
        #[schema(example = "active")]
        pub status: String,
        #[schema(required = true)]
        pub settle_credits: Option<i64>,
        #[schema(required = true)]
        pub rate_limit_per_second: Option<u32>,
        pub created_at: DateTime<Utc>,
        #[schema(required = true)]
        pub expires_at: Option<DateTime<Utc>>,
    }

    #[derive(Serialize, ToSchema)]
    pub struct ClientCreated {
        pub client: IssuedClientKey,
    }

    /// Set (`settleCredits`: a number, or `null` for unlimited) or adjust
    /// (`addSettleCredits`, negative to remove) a key's settle credits (not both), and/or set
    /// its rate limit (`rateLimitPerSecond`: a number, `0` = unlimited, `null` = the default).
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct CreditChange {
        #[schema(example = 1000)]
        pub settle_credits: Option<i64>,
        #[schema(example = 500)]
        pub add_settle_credits: Option<i64>,
        #[schema(example = 5)]
        pub rate_limit_per_second: Option<u32>,
    }

    #[derive(Serialize, ToSchema)]
    pub struct ClientUpdated {
        pub client: ClientKey,
    }

    #[derive(Serialize, ToSchema)]
    pub struct ClientRevoked {
        /// The `clientId` revoked.
        pub deleted: String,
    }

    // --- resources ---

    /// `POST /api/v1/resources` and `PUT /api/v1/resources/{id}`.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct ResourceInput {
        #[schema(example = "/api/premium-data")]
        pub resource: String,
        /// Default `http`.
        #[serde(rename = "type")]
        #[schema(example = "http")]
        pub kind: Option<String>,
        #[schema(example = 1)]
        pub x402_version: u8,
        /// 1 to 32 payment requirements (each needs `scheme`, `network` and `payTo`).
        pub accepts: Vec<PaymentRequirements>,
        /// A JSON object; default `{}`.
        pub metadata: Option<BTreeMap<String, Value>>,
    }

    #[derive(Serialize, ToSchema)]
    pub struct ResourceCreated {
        #[schema(example = "created")]
        pub status: String,
        pub id: i64,
    }

    #[derive(Serialize, ToSchema)]
    pub struct ResourceUpdated {
        /// The id updated.
        pub updated: i64,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct Resource {
        pub id: i64,
        pub resource: String,
        #[serde(rename = "type")]
        pub kind: String,
        pub x402_version: i16,
        pub accepts: Vec<PaymentRequirements>,
        pub metadata: BTreeMap<String, Value>,
        pub created_at: DateTime<Utc>,
        pub last_updated: DateTime<Utc>,
    }

    #[derive(Serialize, ToSchema)]
    pub struct ResourcePage {
        pub resources: Vec<Resource>,
        pub offset: u64,
        pub limit: u64,
        pub total: u64,
    }

    /// An entry of the x402 discovery list.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct DiscoveryItem {
        pub resource: String,
        #[serde(rename = "type")]
        pub kind: String,
        pub x402_version: i16,
        pub accepts: Vec<PaymentRequirements>,
        pub last_updated: DateTime<Utc>,
        pub metadata: BTreeMap<String, Value>,
    }

    #[derive(Serialize, ToSchema)]
    pub struct Pagination {
        pub limit: u64,
        pub offset: u64,
        pub total: u64,
    }

    /// `GET /api/v1/discovery/resources` (bare, the x402 discovery shape).
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct DiscoveryPage {
        #[schema(example = 2)]
        pub x402_version: u8,
        pub items: Vec<DiscoveryItem>,
        pub pagination: Pagination,
    }

    // --- metrics ---

    /// HTTP request counters.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct HttpCounters {
        pub requests: i64,
        /// Requests answered 4xx or 5xx.
        pub errors: i64,
        pub avg_latency_ms: f64,
        pub max_latency_ms: f64,
        /// Requests by HTTP status.
        #[schema(example = json!({"200": 12, "401": 1}))]
        pub by_status: BTreeMap<String, i64>,
    }

    /// HTTP request counters of one route (its pattern, e.g. `/api/v1/clients/{id}`).
    #[derive(Serialize, ToSchema)]
    pub struct HttpRouteCounters {
        #[schema(example = "GET")]
        pub method: String,
        #[schema(example = "/api/v1/clients/{id}")]
        pub route: String,
        #[serde(flatten)]
        pub counters: HttpCounters,
    }

    /// HTTP counters of a period, in total and per route.
    #[derive(Serialize, ToSchema)]
    pub struct HttpTotals {
        #[serde(flatten)]
        pub counters: HttpCounters,
        pub routes: Vec<HttpRouteCounters>,
    }

    #[derive(Serialize, ToSchema)]
    pub struct HttpMetricsDay {
        #[schema(example = "2026-01-31")]
        pub date: NaiveDate,
        #[serde(flatten)]
        pub totals: HttpTotals,
    }

    #[derive(Serialize, ToSchema)]
    pub struct HttpMetricsMonth {
        #[schema(example = "2026-01")]
        pub month: String,
        #[serde(flatten)]
        pub totals: HttpTotals,
    }

    /// `GET /api/v1/metrics/daily`: HTTP requests per day (service-wide). `from`/`to` echo the
    /// query (`null` when open).
    #[derive(Serialize, ToSchema)]
    pub struct HttpMetricsDaily {
        #[schema(required = true)]
        pub from: Option<NaiveDate>,
        #[schema(required = true)]
        pub to: Option<NaiveDate>,
        pub days: Vec<HttpMetricsDay>,
    }

    /// `GET /api/v1/metrics/monthly`: HTTP requests per month (service-wide).
    #[derive(Serialize, ToSchema)]
    pub struct HttpMetricsMonthly {
        #[schema(required = true)]
        pub from: Option<NaiveDate>,
        #[schema(required = true)]
        pub to: Option<NaiveDate>,
        pub months: Vec<HttpMetricsMonth>,
    }

    /// `GET /api/v1/metrics/summary`: HTTP requests over the range (all time by default).
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct HttpMetricsSummary {
        #[schema(required = true)]
        pub from: Option<NaiveDate>,
        #[schema(required = true)]
        pub to: Option<NaiveDate>,
        /// First day with data.
        #[schema(required = true)]
        pub first_day: Option<NaiveDate>,
        /// Last day with data.
        #[schema(required = true)]
        pub last_day: Option<NaiveDate>,
        pub totals: HttpTotals,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct VerifyCounters {
        pub count: i64,
        pub valid: i64,
        pub invalid: i64,
        /// Invalid verifications by x402 reason.
        pub invalid_reasons: BTreeMap<String, i64>,
        pub avg_latency_ms: f64,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct SettleCounters {
        pub count: i64,
        /// Successful answers, repeats included.
        pub successes: i64,
        /// Successes answered from an earlier settle of the same authorization (no second
        /// transfer, no fee).
        pub repeats: i64,
        pub failures: i64,
        /// Failed settlements by x402 reason.
        pub failure_reasons: BTreeMap<String, i64>,
        pub avg_latency_ms: f64,
    }

    /// Amount settled in one asset on one network.
    #[derive(Serialize, ToSchema)]
    pub struct SettledAmount {
        pub network: String,
        pub asset: String,
        /// Atomic units, decimal string.
        #[schema(example = "25000000")]
        pub amount: String,
        /// On-chain transfers (a repeated settle of one authorization counts once).
        pub settlements: i64,
    }

    /// Gas spent settling on one network.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct NetworkFees {
        pub network: String,
        pub gas_used: i64,
        /// Wei, decimal string.
        pub fee_wei: String,
    }

    /// x402 counters of a period.
    #[derive(Serialize, ToSchema)]
    pub struct X402Counters {
        pub verify: VerifyCounters,
        pub settle: SettleCounters,
        pub amounts: Vec<SettledAmount>,
        pub fees: Vec<NetworkFees>,
    }

    #[derive(Serialize, ToSchema)]
    pub struct X402MetricsDay {
        #[schema(example = "2026-01-31")]
        pub date: NaiveDate,
        #[serde(flatten)]
        pub counters: X402Counters,
    }

    #[derive(Serialize, ToSchema)]
    pub struct X402MetricsMonth {
        #[schema(example = "2026-01")]
        pub month: String,
        #[serde(flatten)]
        pub counters: X402Counters,
    }

    /// `GET /api/v1/x402-metrics/daily`: verifications and settlements per day (your client
    /// keys; an admin sees all).
    #[derive(Serialize, ToSchema)]
    pub struct X402MetricsDaily {
        #[schema(required = true)]
        pub from: Option<NaiveDate>,
        #[schema(required = true)]
        pub to: Option<NaiveDate>,
        pub days: Vec<X402MetricsDay>,
    }

    /// `GET /api/v1/x402-metrics/monthly`.
    #[derive(Serialize, ToSchema)]
    pub struct X402MetricsMonthly {
        #[schema(required = true)]
        pub from: Option<NaiveDate>,
        #[schema(required = true)]
        pub to: Option<NaiveDate>,
        pub months: Vec<X402MetricsMonth>,
    }

    /// `GET /api/v1/x402-metrics/summary`: totals over the range (all time by default).
    #[derive(Serialize, ToSchema)]
    pub struct X402MetricsSummary {
        #[schema(required = true)]
        pub from: Option<NaiveDate>,
        #[schema(required = true)]
        pub to: Option<NaiveDate>,
        pub totals: X402Counters,
    }
}

/// Every `ToSchema` type of the document, with the types they reference.
fn components() -> ComponentsBuilder {
    use schema::*;
    let mut all: Vec<(String, RefOr<Schema>)> = Vec::new();
    macro_rules! add {
        ($($t:ty),* $(,)?) => {$(
            all.push((<$t as ToSchema>::name().into_owned(), <$t as PartialSchema>::schema()));
            <$t as ToSchema>::schemas(&mut all);
        )*};
    }
    add!(
        ApiError,
        Health,
        Ready,
        SystemStatus,
        Supported,
        NetworkKind,
        Asset,
        NewAsset,
        PaymentRequest,
        VerifyResponse,
        SettleResponse,
        Settlement,
        Credentials,
        UserCreated,
        LoginResponse,
        RefreshRequest,
        TokenPair,
        NewUser,
        NewClientKey,
        ClientKey,
        ClientCreated,
        ClientRevoked,
        CreditChange,
        ClientUpdated,
        ClientChange,
        ChangedClientKey,
        ClientChanged,
        SignerState,
        ResourceInput,
        ResourceCreated,
        ResourceUpdated,
        ResourcePage,
        DiscoveryPage,
        HttpMetricsDaily,
        HttpMetricsMonthly,
        HttpMetricsSummary,
        X402MetricsDaily,
        X402MetricsMonthly,
        X402MetricsSummary,
    );
    ComponentsBuilder::new().schemas_from_iter(all)
}

// ---------------------------------------------------------------------------------------------
// The table of operations.

/// A success body.
#[derive(Clone)]
pub enum Reply {
    /// The schema itself, no envelope.
    Bare(String),
    /// `{"data": <schema>}`.
    Data(String),
    /// `{"data": [<schema>, ...]}`.
    DataList(String),
    /// Prometheus text exposition.
    Prometheus,
    /// A JSON object of any shape.
    AnyJson,
}

impl Reply {
    fn bare<T: ToSchema>() -> Self {
        Reply::Bare(T::name().into_owned())
    }
    fn data<T: ToSchema>() -> Self {
        Reply::Data(T::name().into_owned())
    }
    fn data_list<T: ToSchema>() -> Self {
        Reply::DataList(T::name().into_owned())
    }
}

/// A path or query parameter.
#[derive(Clone)]
pub struct Param {
    pub name: &'static str,
    pub location: ParameterIn,
    pub required: bool,
    pub description: String,
    pub schema: RefOr<Schema>,
}

/// One documented operation.
#[derive(Clone)]
pub struct Op {
    pub method: Method,
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub description: &'static str,
    pub auth: Auth,
    pub params: Vec<Param>,
    /// Request body schema (JSON).
    pub body: Option<String>,
    pub ok_status: u16,
    pub ok: Reply,
    /// Error statuses with what they mean here (beyond the ones [`Op::errors`] derives).
    pub extra_errors: Vec<(u16, &'static str)>,
}

impl Op {
    fn new(method: Method, path: &'static str, summary: &'static str, ok: Reply) -> Self {
        Op {
            method,
            path,
            tag: "",
            summary,
            description: "",
            auth: Auth::Public,
            params: Vec::new(),
            body: None,
            ok_status: 200,
            ok,
            extra_errors: Vec::new(),
        }
    }
    fn get(path: &'static str, summary: &'static str, ok: Reply) -> Self {
        Self::new(Method::GET, path, summary, ok)
    }
    fn post(path: &'static str, summary: &'static str, ok: Reply) -> Self {
        Self::new(Method::POST, path, summary, ok)
    }
    fn put(path: &'static str, summary: &'static str, ok: Reply) -> Self {
        Self::new(Method::PUT, path, summary, ok)
    }
    fn patch(path: &'static str, summary: &'static str, ok: Reply) -> Self {
        Self::new(Method::PATCH, path, summary, ok)
    }
    fn delete(path: &'static str, summary: &'static str, ok: Reply) -> Self {
        Self::new(Method::DELETE, path, summary, ok)
    }
}

fn integer(min: i64, max: Option<i64>, default: Option<i64>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(min))
        .maximum(max)
        .default(default.map(Into::into))
        .into()
}

fn string_schema(format: Option<KnownFormat>, pattern: Option<&str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(format.map(SchemaFormat::KnownFormat))
        .pattern(pattern)
        .into()
}

impl Op {
    fn describe(mut self, description: &'static str) -> Self {
        self.description = description;
        self
    }
    fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
    fn body<T: ToSchema>(mut self) -> Self {
        self.body = Some(T::name().into_owned());
        self
    }
    fn status(mut self, status: u16) -> Self {
        self.ok_status = status;
        self
    }
    fn error(mut self, status: u16, meaning: &'static str) -> Self {
        self.extra_errors.push((status, meaning));
        self
    }
    fn path_param(mut self, name: &'static str, description: &str, schema: RefOr<Schema>) -> Self {
        self.params.push(Param {
            name,
            location: ParameterIn::Path,
            required: true,
            description: description.to_owned(),
            schema,
        });
        self
    }
    fn query(mut self, name: &'static str, description: &str, schema: RefOr<Schema>) -> Self {
        self.params.push(Param {
            name,
            location: ParameterIn::Query,
            required: false,
            description: description.to_owned(),
            schema,
        });
        self
    }
    fn required_query(
        mut self,
        name: &'static str,
        description: &str,
        schema: RefOr<Schema>,
    ) -> Self {
        self = self.query(name, description, schema);
        if let Some(p) = self.params.last_mut() {
            p.required = true;
        }
        self
    }
    /// `offset` and `limit`.
    fn paged(self, default_limit: i64, max_limit: i64) -> Self {
        self.query(
            "offset",
            "Items to skip (default 0).",
            integer(0, None, Some(0)),
        )
        .query(
            "limit",
            &format!("Page size, 1 to {max_limit} (default {default_limit})."),
            integer(1, Some(max_limit), Some(default_limit)),
        )
    }
    /// A metrics read: access token, `from` and `to` (ISO 8601 dates, both optional).
    fn metrics_read(self) -> Self {
        self.auth(Auth::User)
            .query(
                "from",
                "First day included: an ISO 8601 date (`YYYY-MM-DD`), or a date-time (its UTC \
                 day). Open when omitted.",
                string_schema(Some(KnownFormat::Date), None),
            )
            .query(
                "to",
                "Last day included: an ISO 8601 date (`YYYY-MM-DD`), or a date-time (its UTC \
                 day). Open when omitted.",
                string_schema(Some(KnownFormat::Date), None),
            )
            .error(
                400,
                "`INVALID_REQUEST` (`Invalid query parameters`): a bad date, an unknown \
                 parameter, or `from` after `to`.",
            )
            .error(
                503,
                "`SERVICE_UNAVAILABLE`: the metrics store cannot be read right now.",
            )
    }

    /// Error statuses and what they mean: derived from the operation's inputs and
    /// credentials, then the operation's own.
    pub fn errors(&self) -> Vec<(u16, String)> {
        let mut errors: Vec<(u16, String)> = Vec::new();
        if self.body.is_some() || !self.params.is_empty() {
            errors.push((
                400,
                "`INVALID_REQUEST`: malformed JSON, a missing or invalid field or parameter."
                    .to_owned(),
            ));
        }
        if self.auth.needs_credentials() {
            let how = match self.auth {
                Auth::User => "missing, invalid or expired access token",
                Auth::Admin => "missing or wrong admin token",
                _ => {
                    "missing `X-Client-ID`/`X-Client-Token`, or an unknown, revoked or expired key"
                }
            };
            errors.push((401, format!("`UNAUTHORIZED`: {how}.")));
        }
        if self.body.is_some() {
            errors.push((
                413,
                "`PAYLOAD_TOO_LARGE`: the body exceeds the configured limit.".to_owned(),
            ));
            errors.push((
                415,
                "`UNSUPPORTED_MEDIA_TYPE`: the body is not `application/json`.".to_owned(),
            ));
        }
        for (status, meaning) in &self.extra_errors {
            match errors.iter_mut().find(|(s, _)| s == status) {
                Some(e) => e.1 = (*meaning).to_owned(),
                None => errors.push((*status, (*meaning).to_owned())),
            }
        }
        if !errors.iter().any(|(s, _)| *s == 500) {
            errors.push((500, "`INTERNAL_ERROR`: unexpected server error.".to_owned()));
        }
        errors.sort_by_key(|(s, _)| *s);
        errors
    }
}

/// Operations of one tag.
fn tagged(tag: &'static str, ops: Vec<Op>) -> Vec<Op> {
    ops.into_iter().map(|op| Op { tag, ..op }).collect()
}

/// Every operation of the API: one entry per `(method, path)` of [`super::registered`].
pub fn operations() -> Vec<Op> {
    use schema::*;
    let scrape_401 = "`UNAUTHORIZED`: a scrape token is configured and was not presented.";
    let scrape_403 = "`FORBIDDEN`: no scrape token is configured and the client is not on \
                      loopback.";
    let x402_400 = "`INVALID_REQUEST`: malformed request; `INVALID_PAYLOAD`: the payment \
                    payload cannot be decoded.";
    let system = vec![
        Op::get("/health", "Liveness", Reply::bare::<Health>())
            .describe("Answers while the process runs; does not touch the database."),
        Op::get("/ready", "Readiness", Reply::data::<Ready>())
            .describe(
                "For load balancers: 200 while the database answers and the networks \
                 `ready.networks` names (all served ones by default) are up, `active` or \
                 `degraded` (some RPC endpoint answers).",
            )
            .error(
                503,
                "`SERVICE_UNAVAILABLE`: not ready; `details` names what is missing (the \
                 database, or a network with no RPC endpoint answering).",
            ),
        Op::get("/metrics", "Prometheus metrics", Reply::Prometheus)
            .auth(Auth::Scrape)
            .describe(
                "Prometheus / OpenMetrics exposition: API and x402 counters, signer nonces, \
                 in-flight transactions and balances. With `metrics.prometheus_token` \
                 configured, `Authorization: Bearer <token>` is required; without it, only \
                 loopback clients may scrape.",
            )
            .error(401, scrape_401)
            .error(403, scrape_403),
        Op::get(
            "/api/v1/status",
            "System status",
            Reply::data::<SystemStatus>(),
        )
        .describe(
            "Database health, uptime, and the served networks: status (`active`, \
             `degraded`, `down`), latest block and its age, and each RPC endpoint's health \
             (URLs redacted).",
        ),
        Op::get("/openapi.json", "This OpenAPI document", Reply::AnyJson)
            .describe("The OpenAPI 3 document of this API; `/docs` renders it."),
    ];
    let networks = vec![
        Op::get(
            "/api/v1/networks",
            "List served networks",
            Reply::bare::<Supported>(),
        )
        .describe("One kind per network and x402 version: v1 names, then v2 CAIP-2 ids."),
        Op::get(
            "/api/v1/networks/{id}",
            "Get one network",
            Reply::bare::<NetworkKind>(),
        )
        .path_param(
            "id",
            "A network: v1 name (`base-sepolia`) or CAIP-2 id (`eip155:84532`).",
            string_schema(None, None),
        )
        .error(
            400,
            "`INVALID_REQUEST` (`unsupported network`): unknown or not served.",
        ),
        Op::get(
            "/api/v1/assets",
            "List active assets",
            Reply::data_list::<Asset>(),
        )
        .describe("Registered, active assets (tokens) by network."),
    ];
    let x402 = vec![
        Op::get(
            "/api/v1/supported",
            "Supported payment kinds",
            Reply::bare::<Supported>(),
        )
        .auth(Auth::Client)
        .describe(
            "Same body as `GET /api/v1/networks`, behind client-key auth: a way to check \
                 that a key works.",
        ),
        Op::post(
            "/api/v1/verify",
            "Verify a payment",
            Reply::bare::<VerifyResponse>(),
        )
        .auth(Auth::Client)
        .body::<PaymentRequest>()
        .describe(
            "Checks a signed payment against the requirements without settling it. A \
                 payment that is not valid is a 200 with `isValid: false` and the reason.",
        )
        .error(400, x402_400)
        .error(
            403,
            "`FORBIDDEN`: the key's scope does not include `verify`, or the payment's \
             network is outside the key's `networks`.",
        )
        .error(
            500,
            "`VERIFICATION_FAILED`: verification could not complete. When no RPC endpoint of \
             the network answered in time (`rpc.timeout_ms`), `details` says the network is \
             unavailable and a `Retry-After` header is set.",
        ),
        Op::post(
            "/api/v1/settle",
            "Settle a payment",
            Reply::bare::<SettleResponse>(),
        )
        .auth(Auth::Client)
        .body::<PaymentRequest>()
        .describe(
            "Verifies, then submits the transfer on chain and waits for its receipt. A \
                 refused or reverted settlement is a 200 with `success: false` and the reason; \
                 `settlement_pending` means the outcome is not known yet (see \
                 `GET /api/v1/settlements/{tx}`).",
        )
        .error(400, x402_400)
        .error(
            403,
            "`FORBIDDEN`: the key's scope does not include `settle`, the payment's \
             network is outside the key's `networks`, or the key has no settle credits left.",
        )
        .error(
            500,
            "`SETTLEMENT_FAILED`: settlement could not complete. When no RPC endpoint of the \
             network answered in time (`rpc.timeout_ms`), `details` says the network is \
             unavailable and a `Retry-After` header is set.",
        ),
        Op::get(
            "/api/v1/settlements/{tx}",
            "Get a settlement",
            Reply::data::<Settlement>(),
        )
        .auth(Auth::Client)
        .path_param(
            "tx",
            "Transaction hash, 0x-prefixed 32 bytes.",
            string_schema(None, Some("^0x[0-9a-fA-F]{64}$")),
        )
        .describe("A settlement made with this client key, by transaction hash.")
        .error(
            404,
            "`NOT_FOUND`: no settlement of this key has that transaction.",
        ),
        Op::get(
            "/api/v1/settlements",
            "Find a settlement by its authorization",
            Reply::data::<Settlement>(),
        )
        .auth(Auth::Client)
        .required_query(
            "network",
            "v1 name or CAIP-2 id.",
            string_schema(None, None),
        )
        .required_query(
            "payer",
            "The payer (`authorization.from`).",
            string_schema(None, Some("^0x[0-9a-fA-F]{40}$")),
        )
        .required_query(
            "nonce",
            "The authorization nonce.",
            string_schema(None, Some("^0x[0-9a-fA-F]{64}$")),
        )
        .query(
            "asset",
            "The token, when one nonce was used on several assets.",
            string_schema(None, Some("^0x[0-9a-fA-F]{40}$")),
        )
        .describe(
            "A settlement made with this client key, by its EIP-3009 authorization: how a \
             resource server that lost a settle's answer learns the outcome without settling \
             again.",
        )
        .error(400, "`INVALID_REQUEST`: a missing or malformed parameter.")
        .error(
            404,
            "`NOT_FOUND`: this key made no settlement of that authorization.",
        ),
    ];
    let auth = vec![
        Op::post(
            "/api/v1/signup",
            "Create an account",
            Reply::data::<UserCreated>(),
        )
        .body::<Credentials>()
        .error(409, "`CONFLICT`: the email is taken."),
        Op::post("/api/v1/login", "Log in", Reply::data::<LoginResponse>())
            .body::<Credentials>()
            .describe("Exchanges email and password for an access token and a refresh token.")
            .error(401, "`UNAUTHORIZED`: invalid email or password."),
        Op::post(
            "/api/v1/token/refresh",
            "Refresh the session",
            Reply::data::<TokenPair>(),
        )
        .body::<RefreshRequest>()
        .describe(
            "Exchanges a refresh token for a new access token and a new refresh token. The \
                 refresh token presented is spent; presenting it again revokes the session.",
        )
        .error(
            401,
            "`UNAUTHORIZED` (`invalid session token`): expired, revoked or reused refresh \
                 token.",
        ),
    ];
    let clients = vec![
        Op::post(
            "/api/v1/clients",
            "Create a client key",
            Reply::data::<ClientCreated>(),
        )
        .auth(Auth::User)
        .body::<NewClientKey>()
        .describe(
            "Creates a key for the x402 endpoints. The token is in this answer only: store it.",
        ),
        Op::get(
            "/api/v1/clients",
            "List client keys",
            Reply::data_list::<ClientKey>(),
        )
        .auth(Auth::User)
        .paged(20, 100)
        .describe("Your keys (an admin sees all keys)."),
        Op::delete(
            "/api/v1/clients/{id}",
            "Revoke a client key",
            Reply::data::<ClientRevoked>(),
        )
        .auth(Auth::User)
        .path_param("id", "The key's `clientId`.", string_schema(None, None))
        .error(404, "`NOT_FOUND`: no such key of yours."),
        Op::patch(
            "/api/v1/clients/{id}",
            "Change a client key",
            Reply::data::<ClientChanged>(),
        )
        .auth(Auth::User)
        .path_param("id", "The key's `clientId`.", string_schema(None, None))
        .body::<ClientChange>()
        .describe(
            "Changes the title, scope or networks, pauses (`status: paused`; the key then \
             gets 401 until resumed) or resumes (`status: active`) a key, or rotates its \
             token (`rotate: true`; the new token is in this answer only, the old one stops \
             working at once here and within 30 s on other instances). An admin may change \
             any key.",
        )
        .error(
            400,
            "`INVALID_REQUEST`: nothing to change, or an invalid field.",
        )
        .error(404, "`NOT_FOUND`: no such key of yours.")
        .error(409, "`CONFLICT`: the key has expired."),
        Op::get(
            "/api/v1/clients/status",
            "A client key's own status",
            Reply::data::<ClientKey>(),
        )
        .auth(Auth::Client)
        .describe(
            "Asked with the key itself (`X-Client-ID` / `X-Client-Token`): its status \
             (`active`, `paused`, `revoked`, `expired`), scope, networks, credits and rate \
             limit. Answers for a paused, revoked or expired key too.",
        ),
    ];
    let resources = vec![
        Op::post(
            "/api/v1/resources",
            "Register a resource",
            Reply::data::<ResourceCreated>(),
        )
        .auth(Auth::User)
        .body::<ResourceInput>()
        .status(201)
        .error(409, "`CONFLICT`: you already registered this resource."),
        Op::get(
            "/api/v1/resources",
            "List all resources",
            Reply::data::<ResourcePage>(),
        )
        .paged(100, 1000),
        Op::put(
            "/api/v1/resources/{id}",
            "Update a resource",
            Reply::data::<ResourceUpdated>(),
        )
        .auth(Auth::User)
        .body::<ResourceInput>()
        .path_param("id", "The resource's id.", integer(1, None, None))
        .error(404, "`NOT_FOUND`: no such resource of yours.")
        .error(409, "`CONFLICT`: you already registered that resource URL."),
        Op::get(
            "/api/v1/users/resources",
            "List your resources",
            Reply::data::<ResourcePage>(),
        )
        .auth(Auth::User)
        .paged(100, 1000),
        Op::get(
            "/api/v1/discovery/resources",
            "Discover resources (x402 bazaar)",
            Reply::bare::<DiscoveryPage>(),
        )
        .query(
            "type",
            "Only resources of this type (e.g. `http`).",
            string_schema(None, None),
        )
        .paged(20, 100)
        .describe("The registered resources in the x402 discovery list shape."),
    ];
    let metrics = vec![
        Op::get(
            "/api/v1/metrics/daily",
            "HTTP metrics by day",
            Reply::data::<HttpMetricsDaily>(),
        )
        .metrics_read()
        .describe("HTTP requests per day, in total and per route (service-wide)."),
        Op::get(
            "/api/v1/metrics/monthly",
            "HTTP metrics by month",
            Reply::data::<HttpMetricsMonthly>(),
        )
        .metrics_read(),
        Op::get(
            "/api/v1/metrics/summary",
            "HTTP metrics totals",
            Reply::data::<HttpMetricsSummary>(),
        )
        .metrics_read(),
        Op::get(
            "/api/v1/x402-metrics/daily",
            "Settlement metrics by day",
            Reply::data::<X402MetricsDaily>(),
        )
        .metrics_read()
        .describe(
            "Verifications and settlements per day: counts, reasons, amounts settled and gas \
             spent, by network. Users see their own client keys; admins see all.",
        ),
        Op::get(
            "/api/v1/x402-metrics/monthly",
            "Settlement metrics by month",
            Reply::data::<X402MetricsMonthly>(),
        )
        .metrics_read(),
        Op::get(
            "/api/v1/x402-metrics/summary",
            "Settlement totals",
            Reply::data::<X402MetricsSummary>(),
        )
        .metrics_read(),
    ];
    let admin =
        vec![
        Op::post("/admin/users", "Create a user", Reply::data::<UserCreated>())
            .auth(Auth::Admin)
            .body::<NewUser>()
            .status(201)
            .error(409, "`CONFLICT`: the email is taken."),
        Op::get("/admin/users", "List users", Reply::data_list::<User>())
            .auth(Auth::Admin)
            .paged(100, 1000),
        Op::post("/admin/assets", "Register an asset", Reply::data::<Asset>())
            .auth(Auth::Admin)
            .body::<NewAsset>()
            .status(201)
            .describe(
                "Registers a token on a served network; payments in it are accepted from then on.",
            )
            .error(400, "`INVALID_REQUEST`: unsupported network, bad address, or invalid field.")
            .error(409, "`CONFLICT`: the asset is already registered."),
        Op::patch(
            "/admin/clients/{id}",
            "Set a client key's settle credits",
            Reply::data::<ClientUpdated>(),
        )
        .auth(Auth::Admin)
        .path_param("id", "The key's `clientId`.", string_schema(None, None))
        .body::<CreditChange>()
        .describe(
            "Usage credits: a limited key may make this many more settlements (each new \
             authorization uses one; a repeat of the same one does not; one that sends nothing \
             gives it back). Out of credits, `/settle` answers 403 `FORBIDDEN`.",
        )
        .error(400, "`INVALID_REQUEST`: not exactly one field, a negative balance, or adding to an unlimited key.")
        .error(404, "`NOT_FOUND`: no such active key."),
    ];
    [
        tagged("x402", x402),
        tagged("Auth", auth),
        tagged("Clients", clients),
        tagged("Resources", resources),
        tagged("Networks", networks),
        tagged("Metrics", metrics),
        tagged("Admin", admin),
        tagged("System", system),
    ]
    .into_iter()
    .flatten()
    .collect()
}

const TAGS: &[(&str, &str)] = &[
    ("x402", "Verify and settle payments (client key)."),
    ("Auth", "Accounts and sessions."),
    (
        "Clients",
        "Client keys for the x402 endpoints (access token).",
    ),
    ("Resources", "The registry of paid resources."),
    ("Networks", "Served networks and assets."),
    ("Metrics", "Usage and settlement metrics (access token)."),
    ("Admin", "Operator endpoints (admin token)."),
    ("System", "Health, status, metrics and this document."),
];

fn http_method(method: &Method) -> HttpMethod {
    match *method {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        Method::HEAD => HttpMethod::Head,
        Method::OPTIONS => HttpMethod::Options,
        Method::TRACE => HttpMethod::Trace,
        _ => panic!("no OpenAPI method for {method}"),
    }
}

fn media(schema: impl Into<RefOr<Schema>>) -> utoipa::openapi::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

fn success_response(op: &Op) -> utoipa::openapi::Response {
    let described = |d: &str| ResponseBuilder::new().description(d);
    let envelope = |data: RefOr<Schema>| -> RefOr<Schema> {
        ObjectBuilder::new()
            .property("data", data)
            .required("data")
            .into()
    };
    let what = if op.ok_status == 201 {
        "Created."
    } else {
        "Success."
    };
    match &op.ok {
        Reply::Bare(name) => described(what)
            .content("application/json", media(Ref::from_schema_name(name)))
            .build(),
        Reply::Data(name) => described(&format!("{what} `{{\"data\": {name}}}`."))
            .content(
                "application/json",
                media(envelope(Ref::from_schema_name(name).into())),
            )
            .build(),
        Reply::DataList(name) => described(&format!("{what} `{{\"data\": [{name}]}}`."))
            .content(
                "application/json",
                media(envelope(
                    ArrayBuilder::new()
                        .items(Ref::from_schema_name(name))
                        .into(),
                )),
            )
            .build(),
        Reply::Prometheus => described("OpenMetrics text exposition (Prometheus scrapes it).")
            .content(
                PROMETHEUS_CONTENT_TYPE,
                media(ObjectBuilder::new().schema_type(Type::String)),
            )
            .build(),
        Reply::AnyJson => described(what)
            .content(
                "application/json",
                media(ObjectBuilder::new().schema_type(Type::Object)),
            )
            .build(),
    }
}

fn operation(op: &Op) -> utoipa::openapi::path::Operation {
    let mut builder = OperationBuilder::new()
        .tag(op.tag)
        .summary(Some(op.summary))
        .description((!op.description.is_empty()).then_some(op.description))
        .operation_id(Some(operation_id(op)))
        .response(op.ok_status.to_string(), success_response(op));
    for p in &op.params {
        builder = builder.parameter(
            ParameterBuilder::new()
                .name(p.name)
                .parameter_in(p.location.clone())
                .required(if p.required {
                    Required::True
                } else {
                    Required::False
                })
                .description(Some(p.description.clone()))
                .schema(Some(p.schema.clone())),
        );
    }
    if let Some(body) = &op.body {
        builder = builder.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content("application/json", media(Ref::from_schema_name(body)))
                .build(),
        ));
    }
    for (status, meaning) in op.errors() {
        builder = builder.response(
            status.to_string(),
            ResponseBuilder::new()
                .description(meaning)
                .content(
                    "application/json",
                    media(Ref::from_schema_name(<schema::ApiError as ToSchema>::name())),
                )
                .build(),
        );
    }
    if let Some(requirements) = op.auth.requirements() {
        builder = builder.securities(Some(requirements));
    }
    builder.build()
}

/// `get_api_v1_clients_id`-style ids: unique per (method, path).
fn operation_id(op: &Op) -> String {
    let path: String = op
        .path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut id = format!("{}_{}", op.method.as_str().to_lowercase(), path);
    while id.contains("__") {
        id = id.replace("__", "_");
    }
    id.trim_end_matches('_').to_owned()
}

/// The OpenAPI document of the API.
pub fn openapi() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for op in operations() {
        paths = paths.path(
            op.path,
            PathItem::new(http_method(&op.method), operation(&op)),
        );
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("x402 Facilitator API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Verifies and settles x402 payments (EIP-3009 stablecoin authorizations) on \
                     EVM networks, with the control plane around it: accounts, client keys, a \
                     registry of paid resources, metrics and admin.\n\n\
                     Success bodies are `{\"data\": ...}`, except `/health`, `/api/v1/networks*`, \
                     `/api/v1/supported`, `/api/v1/verify`, `/api/v1/settle` and \
                     `/api/v1/discovery/resources`, which follow the x402 shapes. Every error is \
                     `{\"code\", \"message\", \"details\"}` (`ApiError`).",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(security_schemes(components()).build()))
        .tags(Some(TAGS.iter().map(|(name, description)| {
            TagBuilder::new()
                .name(*name)
                .description(Some(*description))
                .build()
        })))
        .build()
}

/// `(method, path)` pairs of the table, for the coverage check.
pub fn documented() -> BTreeSet<(String, String)> {
    operations()
        .iter()
        .map(|op| (op.method.to_string(), op.path.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn registered() -> BTreeSet<(String, String)> {
        super::super::registered()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p.to_owned()))
            .collect()
    }

    #[test]
    fn every_registered_route_is_documented_and_nothing_else() {
        let registered = registered();
        let documented = documented();
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        let phantom: Vec<_> = documented.difference(&registered).collect();
        assert!(
            undocumented.is_empty(),
            "routes registered in routes::table() but missing from docs::operations(): \
             {undocumented:?}"
        );
        assert!(
            phantom.is_empty(),
            "docs::operations() documents routes the server does not register: {phantom:?}"
        );
        assert_eq!(
            operations().len(),
            documented.len(),
            "docs::operations() lists a (method, path) twice"
        );
    }

    #[test]
    fn document_has_every_operation_with_its_parts() {
        let doc: Value = serde_json::from_str(&OPENAPI_JSON).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for op in operations() {
            let o = &doc["paths"][op.path][op.method.as_str().to_lowercase()];
            let at = format!("{} {}", op.method, op.path);
            assert!(o.is_object(), "{at} missing");
            assert!(o["summary"].is_string(), "{at}: summary");
            assert_eq!(o["tags"][0], op.tag, "{at}: tag");
            assert!(TAGS.iter().any(|(t, _)| *t == op.tag), "{at}: unknown tag");
            let ok = &o["responses"][op.ok_status.to_string()];
            assert!(ok["content"].is_object(), "{at}: success content");
            if matches!(op.method, Method::POST | Method::PUT) {
                assert!(
                    o["requestBody"]["content"]["application/json"]["schema"].is_object(),
                    "{at}: request body"
                );
            }
            let errors = o["responses"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(s, _)| s.starts_with('4') || s.starts_with('5'))
                .collect::<Vec<_>>();
            assert!(!errors.is_empty(), "{at}: error responses");
            for (status, r) in errors {
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ApiError",
                    "{at} {status}: error envelope"
                );
            }
            // Path parameters: exactly the `{name}` segments of the path.
            let in_path: BTreeSet<&str> = op
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            let declared: BTreeSet<&str> = op
                .params
                .iter()
                .filter(|p| p.location == ParameterIn::Path)
                .map(|p| p.name)
                .collect();
            assert_eq!(in_path, declared, "{at}: path parameters");
            let security = &o["security"];
            match op.auth {
                Auth::Public => assert!(security.is_null(), "{at}: public"),
                _ => assert!(security.is_array(), "{at}: security"),
            }
        }
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc: Value = serde_json::from_str(&OPENAPI_JSON).unwrap();
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {r}"));
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "$ref {r} does not resolve"
            );
        }
        for (_, op) in doc["paths"].as_object().unwrap() {
            for (_, o) in op.as_object().unwrap() {
                for req in o["security"].as_array().into_iter().flatten() {
                    for scheme in req.as_object().unwrap().keys() {
                        assert!(doc["components"]["securitySchemes"][scheme].is_object());
                    }
                }
            }
        }
    }
}
