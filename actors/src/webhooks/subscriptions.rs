//! A user's webhook endpoints (`/api/v1/webhooks`): registered, listed, replaced, deleted,
//! their signing secret rotated (shown once, when made), their delivery log read and a
//! delivery sent again. Everything is scoped by owner: another user's endpoint is "not found",
//! and nothing of it is read or touched.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use entities::{client, resource, webhook, webhook_delivery, webhook_event};
use rand::RngCore;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;
use utoipa::ToSchema;

use super::ssrf::{refused_literal, AllowList};
use super::{parse_stored_events, stored_events, EventType};
use crate::auth::accounts::begin_within_cap;
use crate::error::{ServiceError, ServiceResult};

/// At most this many endpoints per account.
pub const MAX_WEBHOOKS: u64 = 20;
/// At most this many keys or resources in one filter.
pub const MAX_FILTER: usize = 100;
const MAX_URL: usize = 2048;

/// What a URL must be: https in production; never an IP literal the address rule refuses,
/// unless allow-listed (names are checked after DNS, at each delivery).
#[derive(Debug, Clone, Default)]
pub struct UrlRules {
    pub require_https: bool,
    pub allow: AllowList,
}

/// An endpoint as given, not yet checked.
#[derive(Debug, Clone)]
pub struct WebhookInput {
    pub url: String,
    pub events: Vec<String>,
    pub client_ids: Option<Vec<String>>,
    pub resource_ids: Option<Vec<i64>>,
    pub enabled: bool,
}

/// An endpoint checked against its owner's keys and resources.
struct Checked {
    url: String,
    events: String,
    client_ids: Option<String>,
    resource_ids: Option<String>,
    enabled: bool,
}

fn invalid(msg: impl Into<String>) -> ServiceError {
    ServiceError::InvalidInput(msg.into())
}

/// The URL as stored, or why not.
pub fn check_url(url: &str, rules: &UrlRules) -> ServiceResult<String> {
    let url = url.trim();
    if url.is_empty() || url.len() > MAX_URL {
        return Err(invalid(format!("url: 1 to {MAX_URL} characters")));
    }
    let parsed =
        reqwest::Url::parse(url).map_err(|e| invalid(format!("url: not an absolute URL ({e})")))?;
    match parsed.scheme() {
        "https" => {}
        "http" if !rules.require_https => {}
        "http" => return Err(invalid("url: https is required in production")),
        other => return Err(invalid(format!("url: scheme {other} is not http(s)"))),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("url: a host is required"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("url: credentials in the URL are not allowed"));
    }
    if parsed.fragment().is_some() {
        return Err(invalid("url: a fragment is not allowed"));
    }
    if let Some(refused) = refused_literal(&parsed, &rules.allow) {
        return Err(invalid(format!("url: {refused}")));
    }
    Ok(parsed.to_string())
}

fn check_events(events: &[String]) -> ServiceResult<String> {
    if events.is_empty() {
        return Err(invalid("events: at least one event"));
    }
    let mut set = Vec::new();
    for e in events {
        let parsed = EventType::parse(e.trim()).ok_or_else(|| {
            let known: Vec<&str> = EventType::ALL.iter().map(|e| e.as_str()).collect();
            invalid(format!(
                "events: unknown event {e:?} (one of {})",
                known.join(", ")
            ))
        })?;
        if !set.contains(&parsed) {
            set.push(parsed);
        }
    }
    Ok(stored_events(&set))
}

async fn check(
    db: &DatabaseConnection,
    rules: &UrlRules,
    user_id: i64,
    input: WebhookInput,
) -> ServiceResult<Checked> {
    let url = check_url(&input.url, rules)?;
    let events = check_events(&input.events)?;
    let client_ids = match input.client_ids {
        None => None,
        Some(ids) => {
            let ids = bounded(ids.into_iter().map(|i| i.trim().to_owned()), "clientIds")?;
            let owned = client::Entity::find()
                .filter(client::Column::UserId.eq(user_id))
                .filter(client::Column::ClientId.is_in(ids.iter().cloned()))
                .count(db)
                .await?;
            stored_filter(&ids, owned, "clientIds", "keys")?
        }
    };
    let resource_ids = match input.resource_ids {
        None => None,
        Some(ids) => {
            let ids = bounded(ids, "resourceIds")?;
            let owned = resource::Entity::find()
                .filter(resource::Column::UserId.eq(user_id))
                .filter(resource::Column::Id.is_in(ids.iter().copied()))
                .count(db)
                .await?;
            stored_filter(&ids, owned, "resourceIds", "resources")?
        }
    };
    Ok(Checked {
        url,
        events,
        client_ids,
        resource_ids,
        enabled: input.enabled,
    })
}

/// A filter's items, distinct: 1 to `MAX_FILTER` of them.
fn bounded<T: Ord>(ids: impl IntoIterator<Item = T>, field: &str) -> ServiceResult<BTreeSet<T>> {
    let ids: BTreeSet<T> = ids.into_iter().collect();
    if ids.is_empty() || ids.len() > MAX_FILTER {
        return Err(invalid(format!(
            "{field}: 1 to {MAX_FILTER} items (omit it for no filter)"
        )));
    }
    Ok(ids)
}

/// A filter as stored (a JSON array), once all its `ids` were found among the user's
/// (`owned` of them).
fn stored_filter<T: Serialize>(
    ids: &BTreeSet<T>,
    owned: u64,
    field: &str,
    what: &str,
) -> ServiceResult<Option<String>> {
    if owned != ids.len() as u64 {
        return Err(invalid(format!(
            "{field}: not all of them are {what} of yours"
        )));
    }
    Ok(Some(serde_json::to_string(ids).expect("ids serialize")))
}

/// A new signing secret: `whsec_` and 48 hex digits (24 random bytes).
fn new_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("whsec_{}", hex::encode(bytes))
}

/// A webhook endpoint (its secret is shown only when it is made).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub id: i64,
    #[schema(example = "https://merchant.example/x402/events")]
    pub url: String,
    #[schema(example = json!(["settlement.mined", "settlement.confirmed"]))]
    pub events: Vec<String>,
    /// Only events of these keys (`null`: every key of yours).
    #[schema(required = true)]
    pub client_ids: Option<Vec<String>>,
    /// Only settlements paying one of these resources (their `accepts`' `payTo` and `asset`);
    /// `null`: every settlement.
    #[schema(required = true)]
    pub resource_ids: Option<Vec<i64>>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<webhook::Model> for WebhookView {
    fn from(w: webhook::Model) -> Self {
        Self {
            id: w.id,
            url: w.url,
            events: parse_stored_events(&w.events)
                .into_iter()
                .map(|e| e.as_str().to_owned())
                .collect(),
            client_ids: w
                .client_ids
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            resource_ids: w
                .resource_ids
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            enabled: w.enabled,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// An endpoint with its signing secret: shown once.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookWithSecret {
    pub webhook: WebhookView,
    /// The HMAC-SHA256 key of `X402-Signature` (see the API description): store it now, it is
    /// not shown again.
    #[schema(example = "whsec_0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978")]
    pub secret: String,
}

/// Register an endpoint for `user_id`.
pub async fn create(
    db: &DatabaseConnection,
    rules: &UrlRules,
    user_id: i64,
    input: WebhookInput,
) -> ServiceResult<WebhookWithSecret> {
    let c = check(db, rules, user_id, input).await?;
    let secret = new_secret();
    let now = Utc::now();
    let txn = begin_within_cap(
        db,
        user_id,
        webhook::Entity::find().filter(webhook::Column::UserId.eq(user_id)),
        MAX_WEBHOOKS,
        "webhooks",
    )
    .await?;
    let model = webhook::ActiveModel {
        user_id: Set(user_id),
        url: Set(c.url),
        events: Set(c.events),
        client_ids: Set(c.client_ids),
        resource_ids: Set(c.resource_ids),
        secret: Set(secret.clone()),
        enabled: Set(c.enabled),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(WebhookWithSecret {
        webhook: model.into(),
        secret,
    })
}

async fn owned(db: &DatabaseConnection, user_id: i64, id: i64) -> ServiceResult<webhook::Model> {
    webhook::Entity::find_by_id(id)
        .filter(webhook::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound("webhook"))
}

/// The user's endpoints, oldest first.
pub async fn list(db: &DatabaseConnection, user_id: i64) -> ServiceResult<Vec<WebhookView>> {
    Ok(webhook::Entity::find()
        .filter(webhook::Column::UserId.eq(user_id))
        .order_by_asc(webhook::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

pub async fn get(db: &DatabaseConnection, user_id: i64, id: i64) -> ServiceResult<WebhookView> {
    Ok(owned(db, user_id, id).await?.into())
}

/// Replace an endpoint's URL, events, filters and state (its secret stays).
pub async fn update(
    db: &DatabaseConnection,
    rules: &UrlRules,
    user_id: i64,
    id: i64,
    input: WebhookInput,
) -> ServiceResult<WebhookView> {
    owned(db, user_id, id).await?;
    let c = check(db, rules, user_id, input).await?;
    let res = webhook::Entity::update_many()
        .col_expr(webhook::Column::Url, Expr::value(c.url))
        .col_expr(webhook::Column::Events, Expr::value(c.events))
        .col_expr(webhook::Column::ClientIds, Expr::value(c.client_ids))
        .col_expr(webhook::Column::ResourceIds, Expr::value(c.resource_ids))
        .col_expr(webhook::Column::Enabled, Expr::value(c.enabled))
        .col_expr(webhook::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(webhook::Column::Id.eq(id))
        .filter(webhook::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    if res.rows_affected != 1 {
        return Err(ServiceError::NotFound("webhook"));
    }
    get(db, user_id, id).await
}

/// Delete an endpoint and its delivery log (deliveries not made yet are dropped).
pub async fn delete(db: &DatabaseConnection, user_id: i64, id: i64) -> ServiceResult<()> {
    let res = webhook::Entity::delete_many()
        .filter(webhook::Column::Id.eq(id))
        .filter(webhook::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    if res.rows_affected != 1 {
        return Err(ServiceError::NotFound("webhook"));
    }
    Ok(())
}

/// A new signing secret for an endpoint, shown once; the old one signs nothing more.
pub async fn rotate_secret(
    db: &DatabaseConnection,
    user_id: i64,
    id: i64,
) -> ServiceResult<WebhookWithSecret> {
    let secret = new_secret();
    let res = webhook::Entity::update_many()
        .col_expr(webhook::Column::Secret, Expr::value(secret.clone()))
        .col_expr(webhook::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(webhook::Column::Id.eq(id))
        .filter(webhook::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    if res.rows_affected != 1 {
        return Err(ServiceError::NotFound("webhook"));
    }
    Ok(WebhookWithSecret {
        webhook: get(db, user_id, id).await?,
        secret,
    })
}

/// One event to one endpoint: where it is.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub id: i64,
    #[schema(example = "evt_7f9c2b1e0a8d4c6b9e3f1a2b3c4d5e6f")]
    pub event_id: String,
    #[schema(example = "settlement.confirmed")]
    pub event_type: String,
    /// `pending` (to be attempted at `nextAttemptAt`), `delivered` (a 2xx answer) or `failed`
    /// (no 2xx answer within the retry window; redeliver to try again).
    #[schema(example = "delivered")]
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    /// The last answer's HTTP status (`null`: none, or no answer).
    #[schema(required = true)]
    pub last_status_code: Option<i32>,
    /// Why the last attempt failed (a refused address, a timeout, a non-2xx answer).
    #[schema(required = true)]
    pub last_error: Option<String>,
    #[schema(required = true)]
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

fn delivery_view(d: webhook_delivery::Model, e: Option<webhook_event::Model>) -> DeliveryView {
    let (event_id, event_type) = e.map(|e| (e.event_id, e.event_type)).unwrap_or_default();
    DeliveryView {
        id: d.id,
        event_id,
        event_type,
        status: d.status,
        attempts: d.attempts,
        next_attempt_at: d.next_attempt_at,
        last_status_code: d.last_status_code,
        last_error: d.last_error,
        delivered_at: d.delivered_at,
        created_at: d.created_at,
    }
}

/// A page of an endpoint's deliveries, newest first, and how many there are.
pub async fn deliveries(
    db: &DatabaseConnection,
    user_id: i64,
    id: i64,
    offset: u64,
    limit: u64,
) -> ServiceResult<(Vec<DeliveryView>, u64)> {
    owned(db, user_id, id).await?;
    let query = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::WebhookId.eq(id))
        .order_by_desc(webhook_delivery::Column::Id);
    let total = query.clone().count(db).await?;
    let rows = query.offset(offset).limit(limit).all(db).await?;
    let events: std::collections::HashMap<i64, webhook_event::Model> =
        webhook_event::Entity::find()
            .filter(webhook_event::Column::Id.is_in(rows.iter().map(|d| d.event_row_id)))
            .all(db)
            .await?
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
    let mut events = events;
    Ok((
        rows.into_iter()
            .map(|d| {
                let e = events.remove(&d.event_row_id);
                delivery_view(d, e)
            })
            .collect(),
        total,
    ))
}

/// Send a delivery again, now (whatever its state; same event id, so a receiver that has it
/// drops it). Its retry window starts again.
pub async fn redeliver(
    db: &DatabaseConnection,
    user_id: i64,
    id: i64,
    delivery_id: i64,
) -> ServiceResult<DeliveryView> {
    owned(db, user_id, id).await?;
    let now = Utc::now();
    let res = webhook_delivery::Entity::update_many()
        .col_expr(
            webhook_delivery::Column::Status,
            Expr::value(super::delivery::PENDING),
        )
        .col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(now))
        .col_expr(webhook_delivery::Column::CreatedAt, Expr::value(now))
        .col_expr(webhook_delivery::Column::UpdatedAt, Expr::value(now))
        .filter(webhook_delivery::Column::Id.eq(delivery_id))
        .filter(webhook_delivery::Column::WebhookId.eq(id))
        .exec(db)
        .await?;
    if res.rows_affected != 1 {
        return Err(ServiceError::NotFound("delivery"));
    }
    let d = webhook_delivery::Entity::find_by_id(delivery_id)
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound("delivery"))?;
    let e = webhook_event::Entity::find_by_id(d.event_row_id)
        .one(db)
        .await?;
    Ok(delivery_view(d, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_before_anything_is_stored() {
        let dev = UrlRules::default();
        let prod = UrlRules {
            require_https: true,
            allow: AllowList::default(),
        };
        assert!(check_url("https://merchant.example/hook", &prod).is_ok());
        assert!(check_url("http://merchant.example/hook", &dev).is_ok());
        assert!(check_url("http://merchant.example/hook", &prod).is_err());
        for bad in [
            "",
            "merchant.example/hook",
            "ftp://merchant.example/",
            "https://user:pw@merchant.example/",
            "https://merchant.example/#frag",
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://[fd00:ec2::254]/",
            "http://10.1.2.3/",
        ] {
            assert!(check_url(bad, &dev).is_err(), "{bad}");
        }
        let allowed = UrlRules {
            require_https: false,
            allow: AllowList::new(&["127.0.0.1".into()]),
        };
        assert!(check_url("http://127.0.0.1:8080/", &allowed).is_ok());
        assert!(check_url(&format!("https://x.example/{}", "a".repeat(2048)), &dev).is_err());
    }

    #[test]
    fn events_must_be_known() {
        assert!(check_events(&[]).is_err());
        assert!(check_events(&["settlement.nope".into()]).is_err());
        assert_eq!(
            check_events(&["settlement.mined".into(), "settlement.mined".into()]).unwrap(),
            ",settlement.mined,"
        );
    }
}
