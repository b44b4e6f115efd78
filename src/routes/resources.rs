//! The registry of paid resources: merchants register and update theirs; anyone lists them
//! (`/resources`, and the x402 discovery shape at `/discovery/resources`).

use actix_web::{web, HttpResponse};
use facilitator_actors::registry::ResourceInput;
use serde::Deserialize;
use serde_json::{json, Value};

use super::PageQuery;
use crate::auth::User;
use crate::error::ApiResult;
use crate::startup::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceBody {
    pub resource: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub x402_version: i64,
    pub accepts: Value,
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

pub async fn create(
    state: web::Data<AppState>,
    User(user): User,
    body: web::Json<ResourceBody>,
) -> ApiResult<HttpResponse> {
    let input = body.into_inner().parse()?;
    let view = state.registry.create_resource(user.id, input).await?;
    Ok(super::created(
        json!({ "status": "created", "id": view.id }),
    ))
}

pub async fn update(
    state: web::Data<AppState>,
    User(user): User,
    id: web::Path<i64>,
    body: web::Json<ResourceBody>,
) -> ApiResult<HttpResponse> {
    let input = body.into_inner().parse()?;
    let view = state.registry.update_resource(user.id, *id, input).await?;
    Ok(super::data(json!({ "updated": view.id })))
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
    Ok(super::data(json!({
        "resources": page.items,
        "offset": offset,
        "limit": limit,
        "total": page.total,
    })))
}

pub async fn list_own(
    state: web::Data<AppState>,
    User(user): User,
    query: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    page(&state, Some(user.id), &query).await
}

pub async fn list_all(
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    page(&state, None, &query).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryQuery {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub offset: Option<u64>,
    pub limit: Option<u64>,
}

/// The x402 discovery ("bazaar") list shape.
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
    let items: Vec<Value> = page
        .items
        .into_iter()
        .map(|r| {
            json!({
                "resource": r.resource,
                "type": r.kind,
                "x402Version": r.x402_version,
                "accepts": r.accepts,
                "lastUpdated": r.last_updated,
                "metadata": r.metadata,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "x402Version": 2,
        "items": items,
        "pagination": { "limit": limit, "offset": offset, "total": page.total },
    })))
}
