//! Client API keys of the signed-in user: create (token shown once), list, revoke.

use actix_web::{web, HttpResponse};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use super::PageQuery;
use crate::auth::User;
use crate::error::ApiResult;
use crate::startup::AppState;

#[derive(Deserialize)]
pub struct CreateClientBody {
    pub title: String,
    pub scope: Option<String>,
    pub ttl_hours: Option<u64>,
    /// Networks the key may pay on (v1 names or CAIP-2); omitted = all.
    pub networks: Option<Vec<String>>,
}

pub async fn create(
    state: web::Data<AppState>,
    User(user): User,
    body: web::Json<CreateClientBody>,
) -> ApiResult<HttpResponse> {
    let new = state
        .auth
        .create_client(
            &user,
            &body.title,
            body.scope.as_deref(),
            body.ttl_hours,
            body.networks.as_deref(),
        )
        .await?;
    let mut client =
        serde_json::to_value(&new.view).map_err(|_| crate::error::ApiError::internal())?;
    client["token"] = json!(new.token.expose_secret());
    Ok(super::data(json!({ "client": client })))
}

pub async fn list(
    state: web::Data<AppState>,
    User(user): User,
    query: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let (offset, limit) = query.resolve(20, 100)?;
    Ok(super::data(
        state.auth.list_clients(&user, offset, limit).await?,
    ))
}

pub async fn revoke(
    state: web::Data<AppState>,
    User(user): User,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    state.auth.revoke_client(&user, &id).await?;
    Ok(super::data(json!({ "deleted": id.into_inner() })))
}
