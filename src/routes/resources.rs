//! The registry of paid resources: merchants register and update theirs; anyone lists them
//! (`/resources`, and the x402 discovery shape at `/discovery/resources`).

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use facilitator_actors::registry::{ResourceInput, ResourceView};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::docs::errors;
use super::x402::schema::PaymentRequirements;
use super::{Data, PageQuery, Paging};
use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// A paid resource and how to pay for it.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ResourceInput)]
pub struct ResourceBody {
    /// 1 to 2048 characters.
    #[schema(example = "/api/premium-data")]
    pub resource: String,
    /// 1 to 32 characters; default `http`.
    #[serde(rename = "type")]
    #[schema(example = "http")]
    pub kind: Option<String>,
    #[schema(example = 1, minimum = 1, maximum = 2)]
    pub x402_version: i64,
    /// 1 to 32 payment requirements, each with `scheme`, a served `network` and `payTo`.
    #[schema(value_type = Vec<PaymentRequirements>, min_items = 1, max_items = 32)]
    pub accepts: Value,
    /// A JSON object; default `{}`.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

impl ResourceBody {
    fn parse(self) -> ApiResult<ResourceInput> {
        Ok(ResourceInput::parse(
            &self.resource,
            self.kind.as_deref(),
            self.x402_version,
            self.accepts,
            self.metadata,
        )?)
    }
}

#[derive(Serialize, ToSchema)]
pub struct ResourceCreated {
    #[schema(example = "created")]
    pub status: &'static str,
    pub id: i64,
}

/// Register a resource
#[utoipa::path(
    post,
    path = "/api/v1/resources",
    tag = "Resources",
    security(("bearerAuth" = [])),
    request_body = ResourceBody,
    responses(
        (status = 201, description = "The resource is registered.", body = Data<ResourceCreated>),
        (status = 409, description = "`CONFLICT`: you already registered this resource; `LIMIT_EXCEEDED`: the account has `limits.max_resources_per_account` resources already.", body = ApiError),
        errors::BadRequest,
        errors::UserAuth,
        errors::JsonBody,
        errors::Internal,
    ),
)]
pub async fn create(
    state: web::Data<AppState>,
    User(user): User,
    body: web::Json<ResourceBody>,
) -> ApiResult<HttpResponse> {
    let input = body.into_inner().parse()?;
    let view = state.registry.create_resource(user.id, input).await?;
    Ok(super::created(ResourceCreated {
        status: "created",
        id: view.id,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct ResourceUpdated {
    /// The id updated.
    pub updated: i64,
}

/// Update a resource
#[utoipa::path(
    put,
    path = "/api/v1/resources/{id}",
    tag = "Resources",
    security(("bearerAuth" = [])),
    params(("id" = i64, Path, description = "The resource's id.", minimum = 1)),
    request_body = ResourceBody,
    responses(
        (status = 200, description = "The resource is updated.", body = Data<ResourceUpdated>),
        (status = 404, description = "`NOT_FOUND`: no such resource of yours.", body = ApiError),
        (status = 409, description = "`CONFLICT`: you already registered that resource URL.", body = ApiError),
        errors::BadRequest,
        errors::UserAuth,
        errors::JsonBody,
        errors::Internal,
    ),
)]
pub async fn update(
    state: web::Data<AppState>,
    User(user): User,
    id: web::Path<i64>,
    body: web::Json<ResourceBody>,
) -> ApiResult<HttpResponse> {
    let input = body.into_inner().parse()?;
    let view = state.registry.update_resource(user.id, *id, input).await?;
    Ok(super::data(ResourceUpdated { updated: view.id }))
}

/// A page of resources.
#[derive(Serialize, ToSchema)]
pub struct ResourcePage {
    pub resources: Vec<ResourceView>,
    pub offset: u64,
    pub limit: u64,
    pub total: u64,
}

async fn page(
    state: &AppState,
    user_id: Option<i64>,
    query: &PageQuery,
) -> ApiResult<HttpResponse> {
    let (offset, limit) = query.resolve(100, 1000)?;
    let page = state
        .registry
        .list_resources(user_id, None, offset, limit)
        .await?;
    Ok(super::data(ResourcePage {
        resources: page.items,
        offset,
        limit,
        total: page.total,
    }))
}

/// List your resources
#[utoipa::path(
    get,
    path = "/api/v1/users/resources",
    tag = "Resources",
    security(("bearerAuth" = [])),
    params(Paging<100, 1000>),
    responses(
        (status = 200, description = "A page of your resources.", body = Data<ResourcePage>),
        errors::BadRequest,
        errors::UserAuth,
        errors::Internal,
    ),
)]
pub async fn list_own(
    state: web::Data<AppState>,
    User(user): User,
    query: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    page(&state, Some(user.id), &query).await
}

/// List all resources
#[utoipa::path(
    get,
    path = "/api/v1/resources",
    tag = "Resources",
    params(Paging<100, 1000>),
    responses(
        (status = 200, description = "A page of resources.", body = Data<ResourcePage>),
        errors::BadRequest,
        errors::Internal,
    ),
)]
pub async fn list_all(
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    page(&state, None, &query).await
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DiscoveryQuery {
    /// Only resources of this type (e.g. `http`).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Items to skip (default 0).
    #[param(minimum = 0, maximum = 9223372036854775807_u64, default = 0)]
    pub offset: Option<u64>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<u64>,
}

/// An entry of the x402 discovery list.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryItem {
    pub resource: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub x402_version: i16,
    #[schema(value_type = Vec<PaymentRequirements>)]
    pub accepts: Value,
    pub last_updated: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub metadata: Value,
}

#[derive(Serialize, ToSchema)]
pub struct Pagination {
    pub limit: u64,
    pub offset: u64,
    pub total: u64,
}

/// The answer of `GET /api/v1/discovery/resources` (bare, the x402 discovery shape).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryPage {
    #[schema(example = 2)]
    pub x402_version: u8,
    pub items: Vec<DiscoveryItem>,
    pub pagination: Pagination,
}

/// Discover resources (x402 bazaar)
///
/// The registered resources in the x402 discovery list shape.
#[utoipa::path(
    get,
    path = "/api/v1/discovery/resources",
    tag = "Resources",
    params(DiscoveryQuery),
    responses(
        (status = 200, description = "A page of resources.", body = DiscoveryPage),
        errors::BadRequest,
        errors::Internal,
    ),
)]
pub async fn discovery(
    state: web::Data<AppState>,
    query: web::Query<DiscoveryQuery>,
) -> ApiResult<HttpResponse> {
    let q = query.into_inner();
    let (offset, limit) = PageQuery {
        offset: q.offset,
        limit: q.limit,
    }
    .resolve(20, 100)?;
    let page = state
        .registry
        .list_resources(None, q.kind, offset, limit)
        .await?;
    let items = page
        .items
        .into_iter()
        .map(|r| DiscoveryItem {
            resource: r.resource,
            kind: r.kind,
            x402_version: r.x402_version,
            accepts: r.accepts,
            last_updated: r.last_updated,
            metadata: r.metadata,
        })
        .collect();
    Ok(HttpResponse::Ok().json(DiscoveryPage {
        x402_version: 2,
        items,
        pagination: Pagination {
            limit,
            offset,
            total: page.total,
        },
    }))
}
