//! HTTP routes, one file per resource of the API reference. Handlers stay thin: parse, call a
//! handle, wrap the reply in `{"data": ...}`.
//!
//! Every handler is documented where it is written: a `#[utoipa::path]` gives its method, path,
//! tag, parameters, body, every answer and its credentials; its doc comment gives the summary
//! (first paragraph) and the description (the rest). [`table`] lists the handlers, and each
//! entry is routed under the method and path of its annotation and puts its operation in the
//! OpenAPI document. So a handler cannot be routed undocumented, nor documented under another
//! path than it is served at. How to document a new endpoint: `docs.rs`.

use std::pin::Pin;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::{from_fn, Next};
use actix_web::web::Bytes;
use actix_web::{web, HttpMessage, HttpResponse, Route};
use futures::{Stream, StreamExt};
use serde::Serialize;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::Required;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorCode};

pub mod admin;
pub mod assets;
pub mod clients;
pub mod console;
pub mod docs;
pub mod health;
pub mod metrics;
pub mod networks;
pub mod overview;
pub mod resources;
pub mod users;
pub mod webhooks;
pub mod x402;

/// The success envelope, `{"data": ...}`.
// Documented as `body = Data<T>` in a `#[utoipa::path]`: a schema `Data_T` per `T`.
#[derive(Serialize, ToSchema)]
pub struct Data<T> {
    pub data: T,
}

/// `{"data": value}`, the success envelope.
pub fn data<T: Serialize>(value: T) -> HttpResponse {
    HttpResponse::Ok().json(Data { data: value })
}

pub fn created<T: Serialize>(value: T) -> HttpResponse {
    HttpResponse::Created().json(Data { data: value })
}

/// `{"data": value}` with the keys of every object in alphabetical order. The answers first
/// built as `serde_json` maps (which sort their keys) have always been sent so; going through a
/// `Value` keeps that order for their types, for clients that compare bodies byte for byte.
pub fn data_sorted<T: Serialize>(value: T) -> crate::error::ApiResult<HttpResponse> {
    Ok(data(sorted(value)?))
}

/// `data_sorted` with 201 Created.
pub fn created_sorted<T: Serialize>(value: T) -> crate::error::ApiResult<HttpResponse> {
    Ok(created(sorted(value)?))
}

/// `value` as a `Value`: its objects' keys sorted (see `data_sorted`).
pub fn sorted<T: Serialize>(value: T) -> crate::error::ApiResult<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| {
        tracing::error!(error = %e, "an answer did not serialize");
        ApiError::internal()
    })
}

/// A resource routing the methods in `allowed`: any other method answers 405 in our envelope,
/// with `Allow` naming those (RFC 9110, section 15.5.6).
pub fn resource(path: &str, allowed: &[Method]) -> actix_web::Resource {
    let allow: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    let allow = allow.join(", ");
    web::resource(path).default_service(web::to(move || method_not_allowed(allow.clone())))
}

async fn method_not_allowed(allow: String) -> HttpResponse {
    use actix_web::ResponseError;
    let mut res =
        ApiError::new(ErrorCode::MethodNotAllowed, "Method not allowed", "").error_response();
    if let Ok(allow) = HeaderValue::from_str(&allow) {
        res.headers_mut().insert(header::ALLOW, allow);
    }
    res
}

pub async fn not_found() -> HttpResponse {
    not_found_response()
}

/// 404 `No such route`, in the envelope.
pub fn not_found_response() -> HttpResponse {
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

/// A JSON body must be an object. serde also reads a struct from a JSON array, field by field
/// (`[null, null]` set a key's credits to unlimited): any other JSON value is refused with 400
/// here, before the handler reads it. Only the body up to its first non-blank byte is read, and
/// blank chunks are dropped as they come (leading white space means nothing in JSON), so what
/// this holds is one chunk; the body's size and time bounds are `middleware::bounded_body`'s.
async fn json_objects_only(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|essence| essence == "application/json" || essence.ends_with("+json"));
    if json {
        let mut payload = req.take_payload();
        let mut start: Option<Bytes> = None;
        while start.is_none() {
            let Some(chunk) = payload.next().await else {
                break;
            };
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let limit = req
                        .app_data::<crate::middleware::BodyBounds>()
                        .map(|b| b.limit);
                    let err = crate::error::payload_error(&e, limit);
                    return Ok(req.error_response(err).map_into_right_body());
                }
            };
            if let Some(i) = chunk.iter().position(|b| !b.is_ascii_whitespace()) {
                start = Some(chunk.slice(i..));
            }
        }
        if start.as_ref().is_some_and(|s| s[0] != b'{') {
            let err = ApiError::invalid_request("the body must be a JSON object");
            return Ok(req.error_response(err).map_into_right_body());
        }
        // The handler reads the whole body: from its first non-blank byte, then the rest.
        let body: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
            Box::pin(futures::stream::iter(start.map(Ok)).chain(payload));
        req.set_payload(Payload::from(body));
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
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

/// How [`PageQuery`] is documented for a list of `DEFAULT` items a page unless asked, at most
/// `MAX`: `params(Paging<20, 100>)` in the `#[utoipa::path]` of a handler that calls
/// `query.resolve(20, 100)`.
pub struct Paging<const DEFAULT: u64, const MAX: u64>;

impl<const DEFAULT: u64, const MAX: u64> utoipa::IntoParams for Paging<DEFAULT, MAX> {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let integer = |min: u64, max: Option<u64>, default: u64| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(min))
                .maximum(max)
                .default(Some(default.into()))
        };
        let query = |name: &str, description: String, schema: ObjectBuilder| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(schema))
                .build()
        };
        vec![
            query(
                "offset",
                "Items to skip (default 0).".to_owned(),
                // The databases take a signed 64-bit offset.
                integer(0, Some(i64::MAX as u64), 0),
            ),
            query(
                "limit",
                format!("Page size, 1 to {MAX} (default {DEFAULT})."),
                integer(1, Some(MAX), DEFAULT),
            ),
        ]
    }
}

/// One routed handler: the path and methods its `#[utoipa::path]` names, a route to it for
/// each method, and its operation in a one-path OpenAPI document (with the schemas it uses).
pub struct Endpoint {
    pub path: String,
    routes: Vec<(Method, Route)>,
    pub doc: utoipa::openapi::OpenApi,
}

impl Endpoint {
    /// `doc` is the handler's annotation (see [`endpoint!`]); `route` makes the route that runs
    /// the handler for one method.
    fn new(doc: utoipa::openapi::OpenApi, route: impl Fn(Method) -> Route) -> Self {
        let mut paths = doc.paths.paths.iter();
        let (path, item) = match (paths.next(), paths.next()) {
            (Some(one), None) => one,
            _ => panic!("an endpoint documents exactly one path"),
        };
        let routes: Vec<(Method, Route)> = operations(item)
            .map(|(method, _)| {
                let route = route(method.clone()).wrap(from_fn(json_objects_only));
                (method, route)
            })
            .collect();
        assert!(!routes.is_empty(), "{path}: the annotation names no method");
        Endpoint {
            path: path.clone(),
            routes,
            doc,
        }
    }
}

/// The operations of a path, by method.
pub fn operations(item: &PathItem) -> impl Iterator<Item = (Method, &Operation)> {
    [
        (Method::GET, &item.get),
        (Method::PUT, &item.put),
        (Method::POST, &item.post),
        (Method::DELETE, &item.delete),
        (Method::OPTIONS, &item.options),
        (Method::HEAD, &item.head),
        (Method::PATCH, &item.patch),
        (Method::TRACE, &item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_ref().map(|op| (method, op)))
}

/// `endpoint!(module::handler)`: the handler, routed and documented as its `#[utoipa::path]`
/// says. (utoipa's `OpenApi` derive finds the annotation of `module::handler`; a handler
/// without one does not compile here.)
macro_rules! endpoint {
    ($module:ident :: $handler:ident) => {{
        #[derive(utoipa::OpenApi)]
        #[openapi(paths($module::$handler))]
        struct Annotation;
        Endpoint::new(<Annotation as utoipa::OpenApi>::openapi(), |method| {
            web::method(method).to($module::$handler)
        })
    }};
}

/// Every route of the server. [`configure`] registers them, one resource per path, in this
/// order (so a literal path comes before a `{param}` path that would match it too), and
/// `docs::openapi` documents them.
pub fn table() -> Vec<Endpoint> {
    vec![
        endpoint!(health::health),
        endpoint!(health::ready),
        endpoint!(metrics::prometheus),
        endpoint!(health::status),
        endpoint!(networks::list),
        endpoint!(networks::get_one),
        endpoint!(assets::list),
        endpoint!(x402::supported),
        endpoint!(x402::verify),
        endpoint!(x402::settle),
        endpoint!(x402::settlement_by_authorization),
        endpoint!(x402::settlement),
        endpoint!(users::signup),
        endpoint!(users::login),
        endpoint!(users::refresh),
        endpoint!(users::me),
        endpoint!(clients::create),
        endpoint!(clients::list),
        // Before `/clients/{id}`, which would otherwise match `status`.
        endpoint!(clients::status),
        endpoint!(clients::revoke),
        endpoint!(clients::update),
        endpoint!(resources::create),
        endpoint!(resources::list_all),
        endpoint!(resources::update),
        endpoint!(resources::list_own),
        endpoint!(overview::account_settlements),
        endpoint!(resources::discovery),
        endpoint!(webhooks::create),
        endpoint!(webhooks::list),
        endpoint!(webhooks::get),
        endpoint!(webhooks::update),
        endpoint!(webhooks::delete),
        endpoint!(webhooks::rotate_secret),
        endpoint!(webhooks::deliveries),
        endpoint!(webhooks::redeliver),
        endpoint!(metrics::http_daily),
        endpoint!(metrics::http_monthly),
        endpoint!(metrics::http_summary),
        endpoint!(metrics::x402_daily),
        endpoint!(metrics::x402_monthly),
        endpoint!(metrics::x402_summary),
        endpoint!(admin::create_user),
        endpoint!(admin::list_users),
        // Before `/admin/users/{id}`.
        endpoint!(overview::user_clients),
        endpoint!(admin::get_account),
        endpoint!(admin::operate_account),
        endpoint!(admin::register_asset),
        endpoint!(admin::operate_client),
        endpoint!(overview::fleet),
        endpoint!(overview::unresolved),
        endpoint!(docs::openapi_json),
    ]
}

/// `(method, path)` of every registered route.
pub fn registered() -> Vec<(Method, String)> {
    table()
        .into_iter()
        .flat_map(|e| {
            let path = e.path;
            e.routes.into_iter().map(move |(m, _)| (m, path.clone()))
        })
        .collect()
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    // One resource per path, so that a method it lacks answers 405 (`resource`).
    let mut resources: Vec<(String, Vec<(Method, Route)>)> = Vec::new();
    for endpoint in table() {
        match resources
            .iter_mut()
            .find(|(path, _)| *path == endpoint.path)
        {
            Some((_, existing)) => existing.extend(endpoint.routes),
            None => resources.push((endpoint.path, endpoint.routes)),
        }
    }
    for (path, routes) in resources {
        let methods: Vec<Method> = routes.iter().map(|(method, _)| method.clone()).collect();
        cfg.service(
            routes
                .into_iter()
                .fold(resource(&path, &methods), |r, (_, route)| r.route(route)),
        );
    }
    // The interactive docs (Swagger UI, served from this binary).
    docs::configure(cfg);
    // The console (its pages and scripts, served from this binary).
    console::configure(cfg);
}
