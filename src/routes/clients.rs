//! Client API keys of the signed-in user: create (token shown once), list, revoke.

use actix_web::{web, HttpResponse};
use facilitator_actors::auth::ClientView;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::docs::errors;
use super::{Data, PageQuery, Paging};
use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::startup::AppState;

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
    #[schema(example = json!(["base-sepolia"]))]
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
    let mut client =
        serde_json::to_value(&new.view).map_err(|_| crate::error::ApiError::internal())?;
    client["token"] = json!(new.token.expose_secret());
    Ok(super::data(json!({ "client": client })))
}

/// List client keys
///
/// Your keys (an admin sees all keys).
#[utoipa::path(
    get,
    path = "/api/v1/clients",
    tag = "Clients",
    security(("bearerAuth" = [])),
    params(Paging<20, 100>),
    responses(
        (status = 200, description = "A page of keys.", body = Data<Vec<ClientView>>),
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
    Ok(super::data(
        state.auth.list_clients(&user, offset, limit).await?,
    ))
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
    Ok(super::data(json!({ "deleted": id.into_inner() })))
}

/// The answers the handlers above build with `json!`, described for the OpenAPI document.
pub mod schema {
    use facilitator_actors::auth::ClientView;
    use serde::Serialize;
    use utoipa::ToSchema;

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

    #[derive(Serialize, ToSchema)]
    pub struct ClientRevoked {
        /// The `clientId` revoked.
        pub deleted: String,
    }
}
