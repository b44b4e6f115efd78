//! `GET /api/v1/assets`: registered, active assets.

use actix_web::{web, HttpResponse};

use crate::error::ApiResult;
use crate::startup::AppState;

pub async fn list(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    Ok(super::data(state.registry.list_assets().await?))
}
