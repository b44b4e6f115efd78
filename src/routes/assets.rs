//! `GET /api/v1/assets`: registered, active assets.

use actix_web::{web, HttpResponse};
use facilitator_actors::registry::AssetView;

use super::docs::errors;
use super::Data;
use crate::error::ApiResult;
use crate::state::AppState;

/// List active assets
///
/// Registered, active assets (tokens) by network.
#[utoipa::path(
    get,
    path = "/api/v1/assets",
    tag = "Networks",
    responses(
        (status = 200, description = "The active assets.", body = Data<Vec<AssetView>>),
        errors::Internal,
    ),
)]
pub async fn list(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    Ok(super::data(state.registry.list_assets().await?))
}
