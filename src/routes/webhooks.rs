//! Webhook endpoints of the signed-in user (`/api/v1/webhooks`): register (the signing secret
//! is shown once), list, read, replace, delete, rotate the secret; each endpoint's delivery log
//! and a redelivery. Another user's endpoint is "not found".

use actix_web::{web, HttpResponse};
use facilitator_actors::webhooks::subscriptions::{
    self, DeliveryView, WebhookInput, WebhookView, WebhookWithSecret,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::docs::errors;
use super::{Data, PageQuery, Paging};
use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// An endpoint: where events are POSTed and which.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = WebhookInput)]
pub struct WebhookBody {
    /// `https://` (`http://` outside production), at most 2048 characters, no credentials or
    /// fragment. Its host must resolve to public addresses at each delivery, unless the
    /// operator allow-listed it (`webhooks.allow_hosts`).
    #[schema(example = "https://merchant.example/x402/events", max_length = 2048)]
    pub url: String,
    /// At least one of `settlement.mined`, `settlement.confirmed`, `settlement.failed`,
    /// `settlement.pending`, `settlement.reorged`, `key.credits_low`, `key.budget_spent`.
    #[schema(example = json!(["settlement.mined", "settlement.confirmed"]), min_items = 1)]
    pub events: Vec<String>,
    /// Only events of these client keys of yours (1 to 100); omit for all.
    #[schema(min_items = 1, max_items = 100)]
    pub client_ids: Option<Vec<String>>,
    /// Only settlements paying one of these resources of yours (by their `accepts`' `payTo`
    /// and `asset`; 1 to 100); omit for all.
    #[schema(min_items = 1, max_items = 100)]
    pub resource_ids: Option<Vec<i64>>,
    /// Default `true`; a disabled endpoint gets no new events.
    pub enabled: Option<bool>,
}

impl From<WebhookBody> for WebhookInput {
    fn from(b: WebhookBody) -> Self {
        Self {
            url: b.url,
            events: b.events,
            client_ids: b.client_ids,
            resource_ids: b.resource_ids,
            enabled: b.enabled.unwrap_or(true),
        }
    }
}

/// Register a webhook endpoint
///
/// Events are POSTed as JSON (`{"id", "type", "created", "data"}`; `data.settlement` is the
/// settlement as `GET /api/v1/settlements/{tx}` shows it when the event happened) with the
/// headers `X402-Event-Id`, `X402-Event-Type` and
/// `X402-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`. Verify
/// the signature over the raw body, refuse a `t` more than 300 seconds from your clock, and
/// drop an event id you have seen (delivery is at least once). Answer 2xx within 10 seconds;
/// anything else is retried with exponential backoff for 24 hours. The secret is in this
/// answer only: store it.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks",
    tag = "Webhooks",
    security(("bearerAuth" = [])),
    request_body = WebhookBody,
    responses(
        (status = 201, description = "The endpoint, and its signing secret (shown once).", body = Data<WebhookWithSecret>),
        (status = 409, description = "`LIMIT_EXCEEDED`: the account has 20 webhook endpoints already.", body = ApiError),
        errors::BadRequest,
        errors::UserAuth,
        errors::JsonBody,
        errors::Internal,
    ),
)]
pub async fn create(
    state: web::Data<AppState>,
    User(user): User,
    body: web::Json<WebhookBody>,
) -> ApiResult<HttpResponse> {
    let made = subscriptions::create(
        &state.db,
        &state.webhook_urls,
        user.id,
        body.into_inner().into(),
    )
    .await?;
    Ok(super::created(made))
}

/// Your webhook endpoints.
#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

/// List your webhook endpoints
#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    tag = "Webhooks",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "Your endpoints, oldest first (at most 20).", body = Data<WebhookList>),
        errors::UserAuth,
        errors::Internal,
    ),
)]
pub async fn list(state: web::Data<AppState>, User(user): User) -> ApiResult<HttpResponse> {
    let webhooks = subscriptions::list(&state.db, user.id).await?;
    Ok(super::data(WebhookList { webhooks }))
}

/// Get a webhook endpoint
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}",
    tag = "Webhooks",
    security(("bearerAuth" = [])),
    params(("id" = i64, Path, description = "The endpoint's id.")),
    responses(
        (status = 200, description = "The endpoint (without its secret).", body = Data<WebhookView>),
        (status = 404, description = "`NOT_FOUND`: no such endpoint of yours.", body = ApiError),
        errors::BadRequest,
        errors::UserAuth,
        errors::Internal,
    ),
)]
pub async fn get(
    state: web::Data<AppState>,
    User(user): User,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    Ok(super::data(
        subscriptions::get(&state.db, user.id, *id).await?,
    ))
}

/// Replace a webhook endpoint
///
/// Its URL, events, filters and state; the secret stays (see rotate).
#[utoipa::path(
    put,
    path = "/api/v1/webhooks/{id}",
    tag = "Webhooks",
    security(("bearerAuth" = [])),
    params(("id" = i64, Path, description = "The endpoint's id.")),
    request_body = WebhookBody,
    responses(
        (status = 200, description = "The endpoint as it is now.", body = Data<WebhookView>),
        (status = 404, description = "`NOT_FOUND`: no such endpoint of yours.", body = ApiError),
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
    body: web::Json<WebhookBody>,
) -> ApiResult<HttpResponse> {
    let view = subscriptions::update(
        &state.db,
        &state.webhook_urls,
        user.id,
        *id,
        body.into_inner().into(),
    )
    .await?;
    Ok(super::data(view))
}

#[derive(Serialize, ToSchema)]
pub struct WebhookDeleted {
    /// The id deleted.
    pub deleted: i64,
}

/// Delete a webhook endpoint
///
/// With its delivery log; deliveries not made yet are dropped.
#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/{id}",
    tag = "Webhooks",
    security(("bearerAuth" = [])),
    params(("id" = i64, Path, description = "The endpoint's id.")),
    responses(
        (status = 200, description = "Deleted.", body = Data<WebhookDeleted>),
        (status = 404, description = "`NOT_FOUND`: no such endpoint of yours.", body = ApiError),
        errors::BadRequest,
        errors::UserAuth,
        errors::Internal,
    ),
)]
pub async fn delete(
    state: web::Data<AppState>,
    User(user): User,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    subscriptions::delete(&state.db, user.id, *id).await?;
    Ok(super::data(WebhookDeleted { deleted: *id }))
}

/// An action without options: the body is `{}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

/// Rotate a webhook endpoint's secret
///
/// A new signing secret, in this answer only; the old one signs nothing from now on.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/rotate-secret",
    tag = "Webhooks",
    security(("bearerAuth" = [])),
    params(("id" = i64, Path, description = "The endpoint's id.")),
    request_body = NoOptions,
    responses(
        (status = 200, description = "The endpoint and its new secret (shown once).", body = Data<WebhookWithSecret>),
        (status = 404, description = "`NOT_FOUND`: no such endpoint of yours.", body = ApiError),
        errors::BadRequest,
        errors::UserAuth,
        errors::JsonBody,
        errors::Internal,
    ),
)]
pub async fn rotate_secret(
    state: web::Data<AppState>,
    User(user): User,
    id: web::Path<i64>,
    _body: web::Json<NoOptions>,
) -> ApiResult<HttpResponse> {
    Ok(super::data(
        subscriptions::rotate_secret(&state.db, user.id, *id).await?,
    ))
}

/// A page of an endpoint's deliveries.
#[derive(Serialize, ToSchema)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryView>,
    pub offset: u64,
    pub limit: u64,
    pub total: u64,
}

/// A webhook endpoint's deliveries
///
/// Newest first: each event sent (or to be sent) to this endpoint, its state, attempts and
/// last answer.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}/deliveries",
    tag = "Webhooks",
    security(("bearerAuth" = [])),
    params(("id" = i64, Path, description = "The endpoint's id."), Paging<50, 500>),
    responses(
        (status = 200, description = "A page of deliveries.", body = Data<DeliveryPage>),
        (status = 404, description = "`NOT_FOUND`: no such endpoint of yours.", body = ApiError),
        errors::BadRequest,
        errors::UserAuth,
        errors::Internal,
    ),
)]
pub async fn deliveries(
    state: web::Data<AppState>,
    User(user): User,
    id: web::Path<i64>,
    query: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let (offset, limit) = query.resolve(50, 500)?;
    let (deliveries, total) =
        subscriptions::deliveries(&state.db, user.id, *id, offset, limit).await?;
    Ok(super::data(DeliveryPage {
        deliveries,
        offset,
        limit,
        total,
    }))
}

/// Redeliver an event
///
/// Sends a delivery again as soon as possible, whatever its state (same event id); its retry
/// window starts again.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver",
    tag = "Webhooks",
    security(("bearerAuth" = [])),
    params(
        ("id" = i64, Path, description = "The endpoint's id."),
        ("delivery_id" = i64, Path, description = "The delivery's id."),
    ),
    request_body = NoOptions,
    responses(
        (status = 200, description = "The delivery, due now.", body = Data<DeliveryView>),
        (status = 404, description = "`NOT_FOUND`: no such endpoint of yours, or no such delivery of it.", body = ApiError),
        errors::BadRequest,
        errors::UserAuth,
        errors::JsonBody,
        errors::Internal,
    ),
)]
pub async fn redeliver(
    state: web::Data<AppState>,
    User(user): User,
    path: web::Path<(i64, i64)>,
    _body: web::Json<NoOptions>,
) -> ApiResult<HttpResponse> {
    let (id, delivery_id) = path.into_inner();
    let view = subscriptions::redeliver(&state.db, user.id, id, delivery_id).await?;
    Ok(super::data(view))
}
