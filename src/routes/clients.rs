//! Client API keys of the signed-in user: create (token shown once), list, change (title,
//! scope, networks, pause/resume, token rotation), revoke; and a key's own status, asked with
//! the key itself.

use actix_web::{web, HttpResponse};
use facilitator_actors::auth::{ClientChange, ClientStatus, ClientView};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{present, PageQuery};
use crate::auth::{ClientCredentials, User};
use crate::error::{ApiError, ApiResult};
use crate::startup::AppState;

/// `{"client": view}`, with the token when one was just issued (shown once).
fn client_body(view: &ClientView, token: Option<&SecretString>) -> ApiResult<Value> {
    let mut client = serde_json::to_value(view).map_err(|_| ApiError::internal())?;
    if let Some(token) = token {
        client["token"] = json!(token.expose_secret());
    }
    Ok(json!({ "client": client }))
}

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
    Ok(super::data(client_body(&new.view, Some(&new.token))?))
}

/// `PATCH /clients/{id}`: any of these, at least one.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateClientBody {
    pub title: Option<String>,
    pub scope: Option<String>,
    /// Missing = unchanged; `null` = every network; a list = only those.
    #[serde(default, deserialize_with = "present")]
    pub networks: Option<Value>,
    /// `active` (resume) or `paused`.
    pub status: Option<ClientStatus>,
    /// `true`: issue a new token (shown once in the answer); the old one stops working.
    #[serde(default)]
    pub rotate: bool,
}

pub async fn update(
    state: web::Data<AppState>,
    User(user): User,
    id: web::Path<String>,
    body: web::Json<UpdateClientBody>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let networks = match body.networks {
        None => None,
        Some(Value::Null) => Some(None),
        Some(v) => Some(Some(serde_json::from_value::<Vec<String>>(v).map_err(
            |_| ApiError::invalid_request("networks must be a list of network names, or null"),
        )?)),
    };
    let changed = state
        .auth
        .update_client(
            &user,
            &id,
            ClientChange {
                title: body.title,
                scope: body.scope,
                networks,
                status: body.status,
                rotate: body.rotate,
            },
        )
        .await?;
    Ok(super::data(client_body(
        &changed.view,
        changed.token.as_ref(),
    )?))
}

/// `GET /clients/status`, asked with the key's own `X-Client-ID` / `X-Client-Token`: what the
/// key is and may do, whatever its status (seed 001's key status endpoint).
pub async fn status(
    state: web::Data<AppState>,
    credentials: ClientCredentials,
) -> ApiResult<HttpResponse> {
    let view = state
        .auth
        .client_status(&credentials.client_id, &credentials.token)
        .await?;
    Ok(super::data(view))
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
