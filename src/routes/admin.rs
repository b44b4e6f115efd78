//! Operator endpoints under `/admin`, authenticated by the static admin token.

use actix_web::{web, HttpResponse};
use alloy_primitives::Address;
use facilitator_actors::auth::{CreditChange, OperatorChange, MAX_RATE_LIMIT};
use facilitator_actors::registry::NewAsset;
use serde::Deserialize;
use serde_json::json;

use super::{present, PageQuery};
use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::startup::AppState;

#[derive(Deserialize)]
pub struct NewUserBody {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub is_admin: bool,
}

pub async fn create_user(
    state: web::Data<AppState>,
    _: Admin,
    body: web::Json<NewUserBody>,
) -> ApiResult<HttpResponse> {
    let user = state
        .auth
        .signup(&body.email, &body.password, body.is_admin, None)
        .await?;
    Ok(super::created(
        json!({ "message": "User created", "user": user }),
    ))
}

pub async fn list_users(
    state: web::Data<AppState>,
    _: Admin,
    query: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let (offset, limit) = query.resolve(100, 1000)?;
    Ok(super::data(state.auth.list_users(offset, limit).await?))
}

/// Any of: `settleCredits` (a number, or `null` for unlimited) or `addSettleCredits` (not
/// both), and `rateLimitPerSecond` (a number, `0` = unlimited, or `null` for the default).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperatorBody {
    /// Missing = not given; `null` = unlimited.
    #[serde(default, deserialize_with = "present")]
    pub settle_credits: Option<serde_json::Value>,
    pub add_settle_credits: Option<i64>,
    /// Missing = not given; `null` = the server's default.
    #[serde(default, deserialize_with = "present")]
    pub rate_limit_per_second: Option<serde_json::Value>,
}

/// `PATCH /admin/clients/{clientId}`: set or adjust a key's settle credits and/or its rate
/// limit.
pub async fn operate_client(
    state: web::Data<AppState>,
    _: Admin,
    id: web::Path<String>,
    body: web::Json<OperatorBody>,
) -> ApiResult<HttpResponse> {
    let credits = match (&body.settle_credits, body.add_settle_credits) {
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
    };
    let rate_limit_per_second = match &body.rate_limit_per_second {
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
    };
    let client = state
        .auth
        .operate_client(
            &id,
            OperatorChange {
                credits,
                rate_limit_per_second,
            },
        )
        .await?;
    Ok(super::data(json!({ "client": client })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAssetBody {
    pub network: String,
    pub asset: String,
    pub symbol: String,
    pub decimals: u8,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(alias = "eip712_name")]
    pub eip712_name: Option<String>,
    #[serde(alias = "eip712_version")]
    pub eip712_version: Option<String>,
}

fn yes() -> bool {
    true
}

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
