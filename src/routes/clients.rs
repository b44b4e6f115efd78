//! Client API keys of the signed-in user: create (token shown once), list, change (title,
//! scope, networks, pause/resume, token rotation), revoke; and a key's own status, asked with
//! the key itself.

use actix_web::{web, HttpResponse};
use facilitator_actors::auth::accounts;
use facilitator_actors::auth::{ClientChange, ClientStatus};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::docs::errors;
use super::{present, Data, PageQuery, Paging};
use crate::auth::{ClientCredentials, User};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[schema(as = NewClientKey)]
pub struct CreateClientBody {
    /// 1 to 200 characters.
    #[schema(example = "my-resource-server", min_length = 1, max_length = 200)]
    pub title: String,
    /// Comma-separated operations allowed (`verify`, `settle`); default all.
    #[schema(example = "verify,settle")]
    pub scope: Option<String>,
    /// Expiry in hours, at most ten years; omit for none.
    #[schema(example = 8760, minimum = 1, maximum = 87600)]
    pub ttl_hours: Option<u64>,
    /// Networks the key may pay on (v1 names or CAIP-2); omit for all served networks.
    #[schema(example = json!(["base-sepolia"]), min_items = 1)]
    pub networks: Option<Vec<String>>,
}

/// Create a client key
///
/// Creates a key for the x402 endpoints. The token is in this answer only: store it.
#[utoipa::path(
    post,
    path = "/api/v1/clients",
    tag = "Clients",
    security(("bearerAuth" = [])),
    request_body = CreateClientBody,
    responses(
        (status = 200, description = "The new key, with its token.", body = Data<schema::ClientCreated>),
        (status = 409, description = "`LIMIT_EXCEEDED`: the account has `limits.max_keys_per_account` live keys already (revoke one to make room).", body = ApiError),
        errors::BadRequest,
        errors::UserAuth,
        errors::JsonBody,
        errors::Internal,
    ),
)]
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
    super::data_sorted(schema::ClientCreated {
        client: schema::IssuedClientKey {
            key: new.view,
            token: new.token.expose_secret().to_owned(),
        },
    })
}

/// List client keys
///
/// Your keys (an admin sees all keys), revoked ones left out, each with the gas its settlement
/// transactions spent today (UTC). Your account's limits and what is left of them are at
/// `GET /api/v1/users/me`.
#[utoipa::path(
    get,
    path = "/api/v1/clients",
    tag = "Clients",
    security(("bearerAuth" = [])),
    params(Paging<20, 100>),
    responses(
        (status = 200, description = "A page of keys.", body = Data<Vec<schema::ClientKeyUsage>>),
        errors::BadRequest,
        errors::UserAuth,
        errors::Internal,
    ),
)]
pub async fn list(
    state: web::Data<AppState>,
    User(user): User,
    query: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let (offset, limit) = query.resolve(20, 100)?;
    let keys = state.auth.list_clients(&user, offset, limit).await?;
    let ids: Vec<String> = keys.iter().map(|k| k.client_id.clone()).collect();
    let spent = accounts::keys_spent_today(&state.db, &state.metrics, &ids).await?;
    let keys: Vec<schema::ClientKeyUsage> = keys
        .into_iter()
        .zip(spent)
        .map(|(key, gas_today)| schema::ClientKeyUsage { key, gas_today })
        .collect();
    Ok(super::data(keys))
}

/// Revoke a client key
#[utoipa::path(
    delete,
    path = "/api/v1/clients/{id}",
    tag = "Clients",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "The key's `clientId`.")),
    responses(
        (status = 200, description = "The key is revoked.", body = Data<schema::ClientRevoked>),
        (status = 404, description = "`NOT_FOUND`: no such key of yours.", body = ApiError),
        errors::BadRequest,
        errors::UserAuth,
        errors::Internal,
    ),
)]
pub async fn revoke(
    state: web::Data<AppState>,
    User(user): User,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    state.auth.revoke_client(&user, &id).await?;
    super::data_sorted(schema::ClientRevoked {
        deleted: id.into_inner(),
    })
}

/// The statuses a key can be given (`DELETE` revokes; expiry comes with time).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // schema only
pub enum StatusChange {
    Active,
    Paused,
}

/// `PATCH /clients/{id}`: any of these, at least one.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ClientChange)]
pub struct UpdateClientBody {
    // Omitted = unchanged (`null` is read as omitted, so the schema does not offer it).
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200, nullable = false)]
    pub title: Option<String>,
    /// Comma-separated operations allowed (`verify`, `settle`).
    #[schema(example = "verify", nullable = false)]
    pub scope: Option<String>,
    // Missing = unchanged; `null` = every network; a list = only those.
    /// `null` = every served network; a list (v1 names or CAIP-2) = only those.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>, min_items = 1)]
    pub networks: Option<Value>,
    /// `active` (resume) or `paused` (the key gets 401 until resumed).
    // Read as any status, so that `revoked`/`expired` get their own clear refusal; the schema
    // offers the two that can be set.
    #[schema(value_type = StatusChange, required = false, example = "paused")]
    pub status: Option<ClientStatus>,
    /// `true`: issue a new token (in the answer only); the old one stops working.
    #[serde(default)]
    pub rotate: bool,
}

/// Change a client key
///
/// Changes the title, scope or networks, pauses (`status: paused`; the key then gets 401
/// until resumed) or resumes (`status: active`) a key, or rotates its token (`rotate: true`;
/// the new token is in this answer only, the old one stops working at once on every
/// instance). An admin may change any key; someone else's key is `NOT_FOUND`, as a missing one.
#[utoipa::path(
    patch,
    path = "/api/v1/clients/{id}",
    tag = "Clients",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "The key's `clientId`.")),
    request_body = UpdateClientBody,
    responses(
        (status = 200, description = "The changed key; `token` only after a rotation.", body = Data<schema::ClientChanged>),
        (status = 400, description = "`INVALID_REQUEST`: nothing to change, or an invalid field.", body = ApiError),
        (status = 404, description = "`NOT_FOUND`: no such key of yours.", body = ApiError),
        (status = 409, description = "`CONFLICT`: the key has expired.", body = ApiError),
        errors::UserAuth,
        errors::JsonBody,
        errors::Internal,
    ),
)]
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
    super::data_sorted(schema::ClientChanged {
        client: schema::ChangedClientKey {
            key: changed.view,
            token: changed.token.map(|t| t.expose_secret().to_owned()),
        },
    })
}

/// A client key's own status
///
/// Asked with the key itself (`X-Client-ID` / `X-Client-Token`): its status (`active`,
/// `paused`, `revoked`, `expired`), scope, networks, settle credits, rate limit and the gas its
/// settlement transactions spent today (UTC); and its account's limits, which bind all the
/// account's keys together, with what is left of them (settle credits, gas budget). A paused,
/// revoked or expired key may ask too.
#[utoipa::path(
    get,
    path = "/api/v1/clients/status",
    tag = "Clients",
    security(("clientId" = [], "clientToken" = [])),
    responses(
        (status = 200, description = "The key and its account.", body = Data<schema::ClientKeyStatus>),
        (status = 401, description = "`UNAUTHORIZED`: missing headers, or an unknown id or a wrong token.", body = ApiError),
        errors::Internal,
    ),
)]
pub async fn status(
    state: web::Data<AppState>,
    credentials: ClientCredentials,
) -> ApiResult<HttpResponse> {
    let (key, user_id) = state
        .auth
        .client_status(&credentials.client_id, &credentials.token)
        .await?;
    let ids = [key.client_id.clone()];
    let gas_today = accounts::keys_spent_today(&state.db, &state.metrics, &ids)
        .await?
        .remove(0);
    let account = accounts::allowance(&state.db, &state.metrics, user_id).await?;
    Ok(super::data(schema::ClientKeyStatus {
        key,
        gas_today,
        account,
    }))
}

/// The answers of the handlers above that are more than a view.
pub mod schema {
    use facilitator_actors::auth::accounts::{AccountAllowance, GasTodayView};
    use facilitator_actors::auth::ClientView;
    use serde::Serialize;
    use utoipa::ToSchema;

    /// A key with the gas its settlement transactions spent today (UTC).
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct ClientKeyUsage {
        #[serde(flatten)]
        pub key: ClientView,
        pub gas_today: GasTodayView,
    }

    /// A key's own view: the key, its spend today (UTC), and its account's limits with what
    /// is left of them.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct ClientKeyStatus {
        #[serde(flatten)]
        pub key: ClientView,
        pub gas_today: GasTodayView,
        /// The account's limits, which bind all its keys together (this one's own limits
        /// still apply inside them).
        pub account: AccountAllowance,
    }

    /// A new key with its token: the only time the token is shown.
    #[derive(Serialize, ToSchema)]
    pub struct IssuedClientKey {
        #[serde(flatten)]
        pub key: ClientView,
        /// The secret for `X-Client-Token`.
        pub token: String,
    }

    #[derive(Serialize, ToSchema)]
    pub struct ClientCreated {
        pub client: IssuedClientKey,
    }

    /// A changed key; `token` only after a rotation (the only time it is shown).
    #[derive(Serialize, ToSchema)]
    pub struct ChangedClientKey {
        #[serde(flatten)]
        pub key: ClientView,
        /// The new secret for `X-Client-Token`, after `rotate: true`.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub token: Option<String>,
    }

    #[derive(Serialize, ToSchema)]
    pub struct ClientChanged {
        pub client: ChangedClientKey,
    }

    #[derive(Serialize, ToSchema)]
    pub struct ClientRevoked {
        /// The `clientId` revoked.
        pub deleted: String,
    }
}
