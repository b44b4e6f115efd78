//! Operator endpoints under `/admin`, authenticated by the static admin token.

use actix_web::{web, HttpResponse};
use alloy_primitives::Address;
use alloy_primitives::U256;
use facilitator_actors::auth::accounts::{self, AccountChange, AccountView};
use facilitator_actors::auth::UserView;
use facilitator_actors::auth::{CreditChange, OperatorChange, MAX_RATE_LIMIT};
use facilitator_actors::registry::AssetView;
use facilitator_actors::registry::NewAsset;
use serde::Deserialize;
use utoipa::ToSchema;

use super::docs::errors;
use super::users::schema::UserCreated;
use super::{present, Data, PageQuery, Paging};
use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// An account to create, admin or not.
#[derive(Deserialize, ToSchema)]
#[schema(as = NewUser)]
pub struct NewUserBody {
    #[schema(example = "newuser@example.com")]
    pub email: String,
    /// At least `auth.min_password_length` characters (10 by default), at most 256 bytes.
    #[schema(format = Password, min_length = 10, max_length = 256)]
    pub password: String,
    #[serde(default)]
    #[schema(default = false)]
    pub is_admin: bool,
}

/// Create a user
#[utoipa::path(
    post,
    path = "/admin/users",
    tag = "Admin",
    security(("adminToken" = [])),
    request_body = NewUserBody,
    responses(
        (status = 201, description = "The account.", body = Data<UserCreated>),
        (status = 409, description = "`CONFLICT`: the email is taken.", body = ApiError),
        errors::BadRequest,
        errors::AdminAuth,
        errors::JsonBody,
        errors::Internal,
    ),
)]
pub async fn create_user(
    state: web::Data<AppState>,
    _: Admin,
    body: web::Json<NewUserBody>,
) -> ApiResult<HttpResponse> {
    let user = state
        .auth
        .signup(&body.email, &body.password, body.is_admin, None)
        .await?;
    super::created_sorted(UserCreated {
        message: "User created".to_owned(),
        user,
    })
}

/// List users
#[utoipa::path(
    get,
    path = "/admin/users",
    tag = "Admin",
    security(("adminToken" = [])),
    params(Paging<100, 1000>),
    responses(
        (status = 200, description = "A page of users.", body = Data<Vec<UserView>>),
        errors::BadRequest,
        errors::AdminAuth,
        errors::Internal,
    ),
)]
pub async fn list_users(
    state: web::Data<AppState>,
    _: Admin,
    query: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let (offset, limit) = query.resolve(100, 1000)?;
    Ok(super::data(state.auth.list_users(offset, limit).await?))
}

/// Any of: settle credits, set (`settleCredits`: a number, or `null` for unlimited) or
/// adjusted (`addSettleCredits`, negative to remove), not both; and the key's rate limit
/// (`rateLimitPerSecond`: requests per second, `0` = unlimited, `null` = the server's default).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = OperatorChange)]
pub struct OperatorBody {
    // Missing = not given; `null` = unlimited.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, example = 1000, minimum = 0)]
    pub settle_credits: Option<serde_json::Value>,
    #[schema(example = 500)]
    pub add_settle_credits: Option<i64>,
    // Missing = not given; `null` = the default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, example = 5, minimum = 0, maximum = 1_000_000)]
    pub rate_limit_per_second: Option<serde_json::Value>,
}

/// Set a client key's settle credits or rate limit
///
/// Usage credits: a limited key may make this many more settlements (each new authorization
/// uses one; a copy or an idempotent retry does not; one that sends nothing gives it back). Out
/// of credits, `/settle` answers 403 `FORBIDDEN`. The rate limit is a token bucket on
/// `/verify`, `/settle` and `/supported`, shared by the instances of a fleet.
#[utoipa::path(
    patch,
    path = "/admin/clients/{id}",
    tag = "Admin",
    security(("adminToken" = [])),
    params(("id" = String, Path, description = "The key's `clientId`.")),
    request_body = OperatorBody,
    responses(
        (status = 200, description = "The key with its new settings.", body = Data<schema::ClientUpdated>),
        (status = 400, description = "`INVALID_REQUEST`: nothing given, both credit fields, a negative balance, adding to an unlimited key, or a bad rate limit.", body = ApiError),
        (status = 404, description = "`NOT_FOUND`: no such active key.", body = ApiError),
        errors::AdminAuth,
        errors::JsonBody,
        errors::Internal,
    ),
)]
pub async fn operate_client(
    state: web::Data<AppState>,
    _: Admin,
    id: web::Path<String>,
    body: web::Json<OperatorBody>,
) -> ApiResult<HttpResponse> {
    let client = state
        .auth
        .operate_client(
            &id,
            OperatorChange {
                credits: credit_change(&body.settle_credits, body.add_settle_credits)?,
                rate_limit_per_second: rate_limit(&body.rate_limit_per_second)?,
            },
        )
        .await?;
    super::data_sorted(schema::ClientUpdated { client })
}

/// `settleCredits` (a number or `null`) or `addSettleCredits`, not both; `None`: neither.
fn credit_change(
    settle_credits: &Option<serde_json::Value>,
    add_settle_credits: Option<i64>,
) -> ApiResult<Option<CreditChange>> {
    Ok(match (settle_credits, add_settle_credits) {
        (None, None) => None,
        (Some(serde_json::Value::Null), None) => Some(CreditChange::Set(None)),
        (Some(v), None) => Some(CreditChange::Set(Some(v.as_i64().ok_or_else(|| {
            ApiError::invalid_request("settleCredits must be an integer or null")
        })?))),
        (None, Some(n)) => Some(CreditChange::Add(n)),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_request(
                "give settleCredits or addSettleCredits, not both",
            ))
        }
    })
}

/// `rateLimitPerSecond`: requests per second (`0` = unlimited) or `null` (the default).
fn rate_limit(value: &Option<serde_json::Value>) -> ApiResult<Option<Option<u32>>> {
    Ok(match value {
        None => None,
        Some(serde_json::Value::Null) => Some(None),
        Some(v) => Some(Some(
            v.as_u64()
                .filter(|n| *n <= MAX_RATE_LIMIT as u64)
                .ok_or_else(|| {
                    ApiError::invalid_request(format!(
                        "rateLimitPerSecond must be an integer from 0 (unlimited) to {MAX_RATE_LIMIT}, or null"
                    ))
                })? as u32,
        )),
    })
}

/// Any of: the account's settle credits, set (`settleCredits`: a number, or `null` for
/// unlimited) or adjusted (`addSettleCredits`, negative to remove), not both; its rate limit
/// (`rateLimitPerSecond`: requests per second of all its keys together, `0` = unlimited, `null`
/// = the server's default); its gas budget (`gasBudgetWeiPerDay`: native fee in wei per UTC day,
/// a decimal string, or `null` for none).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = AccountOperatorChange)]
pub struct AccountOperatorBody {
    // Missing = not given; `null` = unlimited.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, example = 1000, minimum = 0)]
    pub settle_credits: Option<serde_json::Value>,
    #[schema(example = 500)]
    pub add_settle_credits: Option<i64>,
    // Missing = not given; `null` = the default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, example = 20, minimum = 0, maximum = 1_000_000)]
    pub rate_limit_per_second: Option<serde_json::Value>,
    // Missing = not given; `null` = no budget.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "1000000000000000", pattern = "^[0-9]{1,78}$")]
    pub gas_budget_wei_per_day: Option<serde_json::Value>,
}

/// `gasBudgetWeiPerDay`: a decimal string of wei (at most 2^256 - 1), or `null` (no budget).
fn gas_budget(value: &Option<serde_json::Value>) -> ApiResult<Option<Option<U256>>> {
    let bad = || {
        ApiError::invalid_request(
            "gasBudgetWeiPerDay must be a decimal string of wei (at most 2^256 - 1), or null",
        )
    };
    Ok(match value {
        None => None,
        Some(serde_json::Value::Null) => Some(None),
        Some(serde_json::Value::String(s))
            if !s.is_empty() && s.len() <= 78 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(Some(U256::from_str_radix(s, 10).map_err(|_| bad())?))
        }
        Some(_) => return Err(bad()),
    })
}

/// An account, with its limits and today's spend: `{"data": account}`.
pub(super) async fn account(state: &AppState, user_id: i64) -> ApiResult<AccountView> {
    Ok(accounts::account_view(&state.db, &state.metrics, state.auth.caps(), user_id).await?)
}

/// Set an account's limits
///
/// Limits that bind all the account's keys together, besides each key's own: settle credits
/// (each new settlement of any of its keys uses one; out of them, `/settle` answers 403
/// `FORBIDDEN`), a rate limit (a token bucket all its keys draw from on `/verify`, `/settle` and
/// `/supported`; 429 past it; per instance) and a gas budget (the native fee, in wei, its keys'
/// settlement transactions may spend per UTC day, reverted ones included; once spent, `/settle`
/// answers 403 `FORBIDDEN` until 00:00 UTC). Keys created later are bound too.
#[utoipa::path(
    patch,
    path = "/admin/users/{id}",
    tag = "Admin",
    security(("adminToken" = [])),
    params(("id" = i64, Path, description = "The user's id.", minimum = 1)),
    request_body = AccountOperatorBody,
    responses(
        (status = 200, description = "The account with its new limits.", body = Data<schema::AccountUpdated>),
        (status = 400, description = "`INVALID_REQUEST`: nothing given, both credit fields, a negative balance, adding to an unlimited account, a bad rate limit or a bad budget.", body = ApiError),
        (status = 404, description = "`NOT_FOUND`: no such user.", body = ApiError),
        errors::AdminAuth,
        errors::JsonBody,
        errors::Internal,
    ),
)]
pub async fn operate_account(
    state: web::Data<AppState>,
    _: Admin,
    id: web::Path<i64>,
    body: web::Json<AccountOperatorBody>,
) -> ApiResult<HttpResponse> {
    let change = AccountChange {
        credits: credit_change(&body.settle_credits, body.add_settle_credits)?,
        rate_limit_per_second: rate_limit(&body.rate_limit_per_second)?,
        gas_budget_wei: gas_budget(&body.gas_budget_wei_per_day)?,
    };
    state.auth.operate_account(*id, change).await?;
    super::data_sorted(schema::AccountUpdated {
        account: account(&state, *id).await?,
    })
}

/// An account's limits and spend
///
/// The account, its limits (settle credits, rate limit, daily gas budget) and what is left of
/// them, the gas its keys spent today (UTC) in total and per key, and its keys and resources
/// against their caps.
#[utoipa::path(
    get,
    path = "/admin/users/{id}",
    tag = "Admin",
    security(("adminToken" = [])),
    params(("id" = i64, Path, description = "The user's id.", minimum = 1)),
    responses(
        (status = 200, description = "The account.", body = Data<AccountView>),
        (status = 404, description = "`NOT_FOUND`: no such user.", body = ApiError),
        errors::BadRequest,
        errors::AdminAuth,
        errors::Internal,
    ),
)]
pub async fn get_account(
    state: web::Data<AppState>,
    _: Admin,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    Ok(super::data(account(&state, *id).await?))
}

/// A token to accept payments in.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = NewAsset)]
pub struct NewAssetBody {
    /// v1 name or CAIP-2 id of a served network.
    #[schema(example = "base-sepolia")]
    pub network: String,
    /// The token contract, a 0x-prefixed 20-byte address.
    #[schema(example = "0x036CbD53842c5426634e7929541eC2318f3dCF7e")]
    pub asset: String,
    #[schema(example = "USDC")]
    pub symbol: String,
    #[schema(example = 6, maximum = 255)]
    pub decimals: u8,
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub active: bool,
    /// EIP-712 domain name (also accepted as `eip712_name`).
    #[serde(alias = "eip712_name")]
    pub eip712_name: Option<String>,
    /// EIP-712 domain version (also accepted as `eip712_version`).
    #[serde(alias = "eip712_version")]
    pub eip712_version: Option<String>,
}

fn yes() -> bool {
    true
}

/// Register an asset
///
/// Registers a token on a served network; payments in it are accepted from then on.
#[utoipa::path(
    post,
    path = "/admin/assets",
    tag = "Admin",
    security(("adminToken" = [])),
    request_body = NewAssetBody,
    responses(
        (status = 201, description = "The asset.", body = Data<AssetView>),
        (status = 400, description = "`INVALID_REQUEST`: unsupported network, bad address, or invalid field.", body = ApiError),
        (status = 409, description = "`CONFLICT`: the asset is already registered.", body = ApiError),
        errors::AdminAuth,
        errors::JsonBody,
        errors::Internal,
    ),
)]
pub async fn register_asset(
    state: web::Data<AppState>,
    _: Admin,
    body: web::Json<NewAssetBody>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let network = x402::network::parse_network(&body.network).ok_or_else(|| {
        ApiError::new(
            crate::error::ErrorCode::InvalidRequest,
            "unsupported network",
            "",
        )
    })?;
    let address: Address = body
        .asset
        .parse()
        .map_err(|_| ApiError::invalid_request("asset must be a 0x-prefixed 20-byte address"))?;
    let view = state
        .registry
        .register_asset(NewAsset {
            network: network.v1_name.to_owned(),
            address,
            symbol: body.symbol,
            decimals: body.decimals,
            eip712_name: body.eip712_name,
            eip712_version: body.eip712_version,
            active: body.active,
        })
        .await?;
    Ok(super::created(view))
}

/// The answers of the handlers above that wrap a view.
pub mod schema {
    use facilitator_actors::auth::ClientView;
    use serde::Serialize;
    use utoipa::ToSchema;

    #[derive(Serialize, ToSchema)]
    pub struct ClientUpdated {
        pub client: ClientView,
    }

    #[derive(Serialize, ToSchema)]
    pub struct AccountUpdated {
        pub account: facilitator_actors::auth::accounts::AccountView,
    }
}
