//! HTTP routes, one file per resource of the API reference. Handlers stay thin: parse, call a
//! handle, wrap the reply in `{"data": ...}`.

use actix_web::http::Method;
use actix_web::{web, FromRequest, Handler, HttpResponse, Responder, Route};
use serde::Serialize;

use crate::error::{ApiError, ErrorCode};

pub mod admin;
pub mod assets;
pub mod clients;
pub mod docs;
pub mod health;
pub mod metrics;
pub mod networks;
pub mod resources;
pub mod users;
pub mod x402;

/// `{"data": value}`, the success envelope.
pub fn data<T: Serialize>(value: T) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "data": value }))
}

pub fn created<T: Serialize>(value: T) -> HttpResponse {
    HttpResponse::Created().json(serde_json::json!({ "data": value }))
}

/// A resource whose unmatched methods answer 405 in our envelope.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed() -> HttpResponse {
    use actix_web::ResponseError;
    ApiError::new(ErrorCode::MethodNotAllowed, "Method not allowed", "").error_response()
}

pub async fn not_found() -> HttpResponse {
    use actix_web::ResponseError;
    ApiError::not_found("No such route").error_response()
}

/// A body field that is present, even as `null` (serde's `Option` would read `null` as
/// absent): `#[serde(default, deserialize_with = "present")]`.
pub fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    <serde_json::Value as serde::Deserialize>::deserialize(d).map(Some)
}

/// `offset`/`limit` query parameters.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub offset: Option<u64>,
    pub limit: Option<u64>,
}

impl PageQuery {
    pub fn resolve(&self, default_limit: u64, max_limit: u64) -> Result<(u64, u64), ApiError> {
        let limit = self.limit.unwrap_or(default_limit);
        if limit == 0 || limit > max_limit {
            return Err(ApiError::invalid_request(format!(
                "limit must be between 1 and {max_limit}"
            )));
        }
        let offset = self.offset.unwrap_or(0);
        // Databases take a signed 64-bit offset.
        if offset > i64::MAX as u64 {
            return Err(ApiError::invalid_request(format!(
                "offset must be at most {}",
                i64::MAX
            )));
        }
        Ok((offset, limit))
    }
}

/// One HTTP method of a registered path.
pub type Endpoint = (Method, Route);

fn get<F, Args>(handler: F) -> Endpoint
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    (Method::GET, web::get().to(handler))
}

fn post<F, Args>(handler: F) -> Endpoint
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    (Method::POST, web::post().to(handler))
}

fn put<F, Args>(handler: F) -> Endpoint
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    (Method::PUT, web::put().to(handler))
}

fn patch<F, Args>(handler: F) -> Endpoint
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    (Method::PATCH, web::patch().to(handler))
}

fn delete<F, Args>(handler: F) -> Endpoint
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    (Method::DELETE, web::delete().to(handler))
}

/// Every route of the server: full path and its methods. `configure` registers exactly this
/// table, and `registered()` lists it (the OpenAPI document is checked against it).
fn table() -> Vec<(&'static str, Vec<Endpoint>)> {
    vec![
        ("/health", vec![get(health::health)]),
        ("/ready", vec![get(health::ready)]),
        ("/metrics", vec![get(metrics::prometheus)]),
        ("/api/v1/status", vec![get(health::status)]),
        ("/api/v1/networks", vec![get(networks::list)]),
        ("/api/v1/networks/{id}", vec![get(networks::get_one)]),
        ("/api/v1/assets", vec![get(assets::list)]),
        ("/api/v1/supported", vec![get(x402::supported)]),
        ("/api/v1/verify", vec![post(x402::verify)]),
        ("/api/v1/settle", vec![post(x402::settle)]),
        (
            "/api/v1/settlements",
            vec![get(x402::settlement_by_authorization)],
        ),
        ("/api/v1/settlements/{tx}", vec![get(x402::settlement)]),
        ("/api/v1/signup", vec![post(users::signup)]),
        ("/api/v1/login", vec![post(users::login)]),
        ("/api/v1/token/refresh", vec![post(users::refresh)]),
        (
            "/api/v1/clients",
            vec![post(clients::create), get(clients::list)],
        ),
        // Before `/clients/{id}`, which would otherwise match `status`.
        ("/api/v1/clients/status", vec![get(clients::status)]),
        (
            "/api/v1/clients/{id}",
            vec![delete(clients::revoke), patch(clients::update)],
        ),
        (
            "/api/v1/resources",
            vec![post(resources::create), get(resources::list_all)],
        ),
        ("/api/v1/resources/{id}", vec![put(resources::update)]),
        ("/api/v1/users/resources", vec![get(resources::list_own)]),
        (
            "/api/v1/discovery/resources",
            vec![get(resources::discovery)],
        ),
        ("/api/v1/metrics/daily", vec![get(metrics::http_daily)]),
        ("/api/v1/metrics/monthly", vec![get(metrics::http_monthly)]),
        ("/api/v1/metrics/summary", vec![get(metrics::http_summary)]),
        ("/api/v1/x402-metrics/daily", vec![get(metrics::x402_daily)]),
        (
            "/api/v1/x402-metrics/monthly",
            vec![get(metrics::x402_monthly)],
        ),
        (
            "/api/v1/x402-metrics/summary",
            vec![get(metrics::x402_summary)],
        ),
        (
            "/admin/users",
            vec![post(admin::create_user), get(admin::list_users)],
        ),
        ("/admin/assets", vec![post(admin::register_asset)]),
        ("/admin/clients/{id}", vec![patch(admin::operate_client)]),
        ("/openapi.json", vec![get(docs::openapi_json)]),
    ]
}

/// `(method, path)` of every registered route.
pub fn registered() -> Vec<(Method, &'static str)> {
    table()
        .into_iter()
        .flat_map(|(path, endpoints)| endpoints.into_iter().map(move |(m, _)| (m, path)))
        .collect()
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, endpoints) in table() {
        let resource = endpoints
            .into_iter()
            .fold(resource(path), |r, (_, route)| r.route(route));
        cfg.service(resource);
    }
    // The interactive docs (Swagger UI, served from this binary).
    docs::configure(cfg);
}
