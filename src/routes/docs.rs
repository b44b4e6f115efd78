//! The OpenAPI 3 document (`/openapi.json`) and the interactive docs (`/docs`).
//!
//! Every operation is documented on its handler; [`openapi`] only gathers what the handlers
//! say (`routes::table()`) and adds what belongs to the whole API: the info, the tags, the
//! security schemes, the error envelope and one operation id per route.
//!
//! # Documenting an endpoint
//!
//! Take `clients::list` or `x402::settle` as the model.
//!
//! 1. **Doc comment** on the handler: its first paragraph is the operation's summary (a few
//!    words, no full stop), the other paragraphs its description. Notes for developers only go
//!    in `//` comments.
//! 2. **`#[utoipa::path(...)]`** on the handler:
//!    - the method and `path = "/api/v1/..."`: the route is registered under exactly these
//!      (actix and OpenAPI both write a path parameter `{name}`);
//!    - `tag = "..."`, one of [`TAGS`];
//!    - `security(...)`, by the credential the handler's extractor takes: `User` is
//!      `("bearerAuth" = [])`, `Admin` is `("adminToken" = [])`, `Client` is
//!      `("clientId" = [], "clientToken" = [])` (both headers together); none when public;
//!    - `params(...)`: each path parameter `("id" = String, Path, description = "...")`, a
//!      request header the handler reads (`("Idempotency-Key" = Option<String>, Header,
//!      description = "...")`), a query struct that derives `IntoParams`, or
//!      `Paging<DEFAULT, MAX>` for a `PageQuery`;
//!    - `request_body = T`, with `T` the type the handler deserializes;
//!    - `responses(...)`: the success, `(status = 200, description = "...", body = Data<T>)`
//!      (`Data<T>` is `{"data": T}`; a bare `T` for the x402 shapes), then **every error
//!      status** the handler can answer, all in the envelope: its own, as
//!      `(status = 404, description = "`NOT_FOUND`: ...", body = ApiError)`, and the shared
//!      ones of [`errors`]: `BadRequest` (a body or parameters), `JsonBody` (413 and 415, with a
//!      JSON body), `UserAuth` / `AdminAuth` / `ClientAuth` (401, with credentials) and
//!      `Internal` (500, always). An operation whose 400 or 500 means more than the shared one
//!      lists its own tuple instead of it. Response headers go in the tuple:
//!      `headers(("Retry-After" = u64, description = "..."))`; a set several operations share
//!      (a 429, say) belongs in [`errors`].
//! 3. **Bodies derive `ToSchema`.** Use the type the handler really deserializes or
//!    serializes (request structs here, the views and reports of `facilitator-actors`, the
//!    x402 answers of `x402::proto`): one type per answer, so the document cannot drift from
//!    what is sent. Only a body a handler reads as a raw `serde_json::Value` (the x402
//!    requests, parsed by `x402::proto`) is described by a `ToSchema` struct of its own, in a
//!    `schema` module beside the handler.
//!    `#[schema(as = Name)]` gives a type its public name; `#[schema(value_type = ...)]`
//!    documents a field read as a raw `serde_json::Value`; limits the server enforces
//!    (`minimum`, `max_length`...) go on the field, and nothing it does not enforce.
//! 4. **Route it:** `endpoint!(module::handler)` in `routes::table()`. That registers the
//!    handler under the annotation's method and path and puts its operation here: a handler
//!    cannot be routed without an annotation. A literal path (`/api/v1/clients/status`) goes
//!    before a `{param}` path that also matches it (`/api/v1/clients/{id}`).
//! 5. **Check:** `cargo test --lib docs` (the document matches the router and every operation
//!    has its parts: summary, known tag, errors in the envelope, a 401 wherever credentials
//!    are asked...), `cargo test --test api docs` (real answers against the document), and
//!    schemathesis (`tools/schemathesis/run.sh`; BENCHMARKS.md, "API conformance").
//!
//! `/docs` is Swagger UI, its files embedded in the binary (`utoipa-swagger-ui`, `vendored`):
//! nothing is fetched from another host, so the docs work offline.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use actix_web::http::header::{self, ContentType};
use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{ArrayItems, ComponentsBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::error::ApiError;

/// Where the document is served (registered by `super::configure`, like every route).
pub const OPENAPI_PATH: &str = "/openapi.json";
/// Where Swagger UI is served.
pub const DOCS_PATH: &str = "/docs";

/// The document, built and serialized once.
static OPENAPI_JSON: LazyLock<String> =
    LazyLock::new(|| serde_json::to_string(&openapi()).expect("the OpenAPI document serializes"));

/// This OpenAPI document
///
/// The OpenAPI 3 document of this API; `/docs` renders it.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "System",
    responses(
        (status = 200, description = "The document.", body = Object),
        errors::Internal,
    ),
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(OPENAPI_JSON.as_str())
}

/// `GET /docs` sends the browser to `/docs/`, where Swagger UI's relative asset links resolve.
async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        // Relative, so that it also works behind a proxy that mounts us under a prefix.
        .insert_header((header::LOCATION, "docs/"))
        .finish()
}

/// Swagger UI at `/docs/` (its HTML, JS and CSS come from the binary), reading
/// `/openapi.json`. The UI is given a URL only, so it registers no document route of its own.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource(DOCS_PATH, &[Method::GET]).route(web::get().to(docs_redirect)));
    let ui = Config::from(OPENAPI_PATH)
        // Swagger UI's default validator badge loads an image from validator.swagger.io.
        .validator_url("none")
        .persist_authorization(true)
        .display_request_duration(true)
        .filter(true);
    cfg.service(SwaggerUi::new(format!("{DOCS_PATH}/{{_:.*}}")).config(ui));
}

// ---------------------------------------------------------------------------------------------
// What the whole API shares.

/// The tags operations are grouped by (`tag = "..."` in `#[utoipa::path]`), in display order.
pub const TAGS: &[(&str, &str)] = &[
    ("x402", "Verify and settle payments (client key)."),
    ("Auth", "Accounts and sessions."),
    (
        "Clients",
        "Client keys for the x402 endpoints (access token).",
    ),
    ("Resources", "The registry of paid resources."),
    (
        "Webhooks",
        "Signed event deliveries to your endpoints (access token).",
    ),
    ("Networks", "Served networks and assets."),
    ("Metrics", "Usage and settlement metrics (access token)."),
    ("Admin", "Operator endpoints (admin token)."),
    ("System", "Health, status, metrics and this document."),
];

/// Security scheme names, as `security(...)` of `#[utoipa::path]` names them.
pub const BEARER_AUTH: &str = "bearerAuth";
pub const ADMIN_TOKEN: &str = "adminToken";
pub const CLIENT_ID: &str = "clientId";
pub const CLIENT_TOKEN: &str = "clientToken";
pub const METRICS_TOKEN: &str = "metricsToken";

fn security_schemes(components: ComponentsBuilder) -> ComponentsBuilder {
    let bearer = |format: &str, description: &str| {
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format(format)
                .description(Some(description))
                .build(),
        )
    };
    components
        .security_scheme(
            BEARER_AUTH,
            bearer(
                "JWT",
                "A user's access token, from `POST /api/v1/login` or `POST /api/v1/token/refresh`: \
                 `Authorization: Bearer <access_token>`.",
            ),
        )
        .security_scheme(
            ADMIN_TOKEN,
            bearer(
                "static token",
                "The operator's static admin token (`auth.admin_token` in the configuration), \
                 for `/admin/*`: `Authorization: Bearer <admin_token>`.",
            ),
        )
        .security_scheme(
            CLIENT_ID,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Client-ID",
                "The `clientId` of a client key (`POST /api/v1/clients`). Sent together with \
                 `X-Client-Token`.",
            ))),
        )
        .security_scheme(
            CLIENT_TOKEN,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Client-Token",
                "The `token` of a client key, shown once when the key is created. Sent together \
                 with `X-Client-ID`.",
            ))),
        )
        .security_scheme(
            METRICS_TOKEN,
            bearer(
                "static token",
                "The Prometheus scrape token (`metrics.prometheus_token`), when the server has \
                 one configured: `Authorization: Bearer <token>`. Without one, `/metrics` \
                 answers loopback clients only.",
            ),
        )
}

/// Error answers many operations share, for `responses(...)` of `#[utoipa::path]` (each is
/// the `ApiError` envelope). An operation lists the ones it can answer, beside its own.
pub mod errors {
    use std::collections::BTreeMap;

    use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
    use utoipa::{IntoResponses, ToSchema};

    use crate::error::ApiError;

    /// `(status, meaning)` answers in the envelope.
    fn answers(list: &[(u16, &str)]) -> BTreeMap<String, RefOr<Response>> {
        list.iter()
            .map(|(status, meaning)| {
                let envelope = ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(ApiError::name())))
                    .build();
                let response = ResponseBuilder::new()
                    .description(*meaning)
                    .content("application/json", envelope)
                    .build();
                (status.to_string(), RefOr::T(response))
            })
            .collect()
    }

    macro_rules! shared {
        ($($(#[$doc:meta])* $name:ident: $(($status:literal, $meaning:literal)),+;)+) => {$(
            $(#[$doc])*
            pub struct $name;

            impl IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    answers(&[$(($status, $meaning)),+])
                }
            }
        )+};
    }

    shared! {
        /// 400: for an operation that reads a body or parameters.
        BadRequest: (400, "`INVALID_REQUEST`: malformed JSON, a missing or invalid field or parameter.");
        /// 408, 413 and 415: for an operation that reads a JSON body.
        JsonBody:
            (408, "`REQUEST_TIMEOUT`: the body did not arrive whole within `server.body_timeout_secs`."),
            (413, "`PAYLOAD_TOO_LARGE`: the body exceeds the configured limit (`server.body_limit_bytes`); a longer declared `Content-Length` is refused before the body is read."),
            (415, "`UNSUPPORTED_MEDIA_TYPE`: the body is not `application/json`.");
        /// 401: for an operation that takes an access token (`bearerAuth`).
        UserAuth: (401, "`UNAUTHORIZED`: missing, invalid or expired access token.");
        /// 401: for an operation that takes the admin token (`adminToken`).
        AdminAuth: (401, "`UNAUTHORIZED`: missing or wrong admin token.");
        /// 401: for an operation that takes a client key (`clientId` + `clientToken`).
        ClientAuth: (401, "`UNAUTHORIZED`: missing `X-Client-ID`/`X-Client-Token`, or an unknown, revoked or expired key.");
        /// 500: every operation.
        Internal: (500, "`INTERNAL_ERROR`: unexpected server error.");
    }

    /// One integer response header.
    fn header(description: &str) -> utoipa::openapi::header::Header {
        utoipa::openapi::header::HeaderBuilder::new()
            .schema(
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::Integer)
                    .minimum(Some(0)),
            )
            .description(Some(description))
            .build()
    }

    /// A 429 in the envelope, with `Retry-After` (and, for a client key's bucket, the
    /// `RateLimit-*` headers).
    fn throttled(meaning: &str, rate_limit: bool) -> BTreeMap<String, RefOr<Response>> {
        let envelope = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(ApiError::name())))
            .build();
        let mut response = ResponseBuilder::new()
            .description(meaning)
            .content("application/json", envelope)
            .header(
                "Retry-After",
                header("Seconds to wait before trying again."),
            );
        if rate_limit {
            response = response
                .header("RateLimit-Limit", header("The key's requests per second."))
                .header("RateLimit-Remaining", header("Requests left now (0)."))
                .header(
                    "RateLimit-Reset",
                    header("Seconds until the bucket is full again."),
                );
        }
        BTreeMap::from([("429".to_owned(), RefOr::T(response.build()))])
    }

    /// 429: a throttled login, signup or token refresh.
    pub struct Throttled;

    impl IntoResponses for Throttled {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            throttled(
                "`TOO_MANY_REQUESTS`: too many attempts (failed logins per account or per \
                 address, signups or refreshes per address); `Retry-After` says when to try \
                 again.",
                false,
            )
        }
    }

    /// 429: the client key's rate limit (`/verify`, `/settle`, `/supported`).
    pub struct RateLimited;

    impl IntoResponses for RateLimited {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            throttled(
                "`TOO_MANY_REQUESTS`: the client key's rate limit is exceeded; `Retry-After` \
                 and `RateLimit-*` say when it refills.",
                true,
            )
        }
    }
}

/// `get_api_v1_clients_id`-style ids: unique per (method, path).
fn operation_id(method: &Method, path: &str) -> String {
    let path: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut id = format!("{}_{}", method.as_str().to_lowercase(), path);
    while id.contains("__") {
        id = id.replace("__", "_");
    }
    id.trim_end_matches('_').to_owned()
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (Method, &mut Operation)> {
    [
        (Method::GET, &mut item.get),
        (Method::PUT, &mut item.put),
        (Method::POST, &mut item.post),
        (Method::DELETE, &mut item.delete),
        (Method::OPTIONS, &mut item.options),
        (Method::HEAD, &mut item.head),
        (Method::PATCH, &mut item.patch),
        (Method::TRACE, &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_mut().map(|op| (method, op)))
}

/// The OpenAPI document of the API: the operations of the routed handlers, and what they share.
pub fn openapi() -> OpenApi {
    // The envelope, which the shared `errors` answers name.
    let mut schemas: Vec<(String, RefOr<Schema>)> =
        vec![(ApiError::name().into_owned(), ApiError::schema())];
    <ApiError as ToSchema>::schemas(&mut schemas);
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("x402 Facilitator API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Verifies and settles x402 payments (EIP-3009 stablecoin authorizations) on \
                     EVM networks, with the control plane around it: accounts, client keys, a \
                     registry of paid resources, metrics and admin.\n\n\
                     Success bodies are `{\"data\": ...}`, except `/health`, `/api/v1/networks*`, \
                     `/api/v1/supported`, `/api/v1/verify`, `/api/v1/settle` and \
                     `/api/v1/discovery/resources`, which follow the x402 shapes. Every error is \
                     `{\"code\", \"message\", \"details\"}` (`ApiError`).",
                ))
                .build(),
        )
        .components(Some(
            security_schemes(ComponentsBuilder::new().schemas_from_iter(schemas)).build(),
        ))
        .tags(Some(TAGS.iter().map(|(name, description)| {
            TagBuilder::new()
                .name(*name)
                .description(Some(*description))
                .build()
        })))
        .build();
    for endpoint in super::table() {
        doc.merge(endpoint.doc);
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in operations_mut(item) {
            op.operation_id = Some(operation_id(&method, path));
        }
    }
    inline_envelopes(&mut doc);
    at_least_one_property(&mut doc);
    doc
}

/// The change bodies take any of their fields, at least one. utoipa 5.5 writes
/// `#[schema(min_properties = 1)]` as `maxProperties: 1` (its code generator maps the one to
/// the other), which would allow one field at most, so the bound is set here.
fn at_least_one_property(doc: &mut OpenApi) {
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    for name in ["ClientChange", "OperatorChange"] {
        if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) {
            object.max_properties = None;
            object.min_properties = Some(1);
        }
    }
}

/// utoipa 5 documents each `Data<T>` as a schema of its own, `Data_T`, holding a copy of `T`.
/// The document shows the envelope inline instead, around a reference to `T`:
/// `{"data": {"$ref": ".../T"}}` (or an array of them), so `T` is described once.
fn inline_envelopes(doc: &mut OpenApi) {
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    let names: Vec<String> = components
        .schemas
        .keys()
        .filter(|name| name.starts_with("Data_"))
        .cloned()
        .collect();
    let mut envelopes = BTreeMap::new();
    for name in names {
        let Some(mut envelope) = components.schemas.remove(&name) else {
            continue;
        };
        if let RefOr::T(Schema::Object(object)) = &mut envelope {
            if let Some(data) = object.properties.get_mut("data") {
                refer_to_named(data, &components.schemas);
            }
        }
        envelopes.insert(Ref::from_schema_name(name).ref_location, envelope);
    }
    for item in doc.paths.paths.values_mut() {
        for (_, op) in operations_mut(item) {
            for response in op.responses.responses.values_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                for content in response.content.values_mut() {
                    if let Some(RefOr::Ref(r)) = &content.schema {
                        if let Some(envelope) = envelopes.get(&r.ref_location) {
                            content.schema = Some(envelope.clone());
                        }
                    }
                }
            }
        }
    }
}

/// A copy of a named schema (or an array of such copies) becomes a reference to it.
fn refer_to_named(schema: &mut RefOr<Schema>, named: &BTreeMap<String, RefOr<Schema>>) {
    if let RefOr::T(Schema::Array(array)) = schema {
        if let ArrayItems::RefOrSchema(items) = &mut array.items {
            refer_to_named(items, named);
        }
    } else if let Some((name, _)) = named.iter().find(|(_, s)| *s == schema) {
        *schema = RefOr::Ref(Ref::from_schema_name(name));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use serde_json::Value;

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    fn document() -> Value {
        serde_json::from_str(&OPENAPI_JSON).unwrap()
    }

    /// `(METHOD, path, operation)` of every operation of the document.
    fn documented(doc: &Value) -> Vec<(String, String, Value)> {
        doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .iter()
                    .filter(|(m, _)| METHODS.contains(&m.as_str()))
                    .map(|(m, op)| (m.to_uppercase(), path.clone(), op.clone()))
            })
            .collect()
    }

    #[test]
    fn every_registered_route_is_documented_and_nothing_else() {
        let registered: Vec<(String, String)> = super::super::registered()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p))
            .collect();
        let routes: BTreeSet<(String, String)> = registered.iter().cloned().collect();
        assert_eq!(
            routes.len(),
            registered.len(),
            "routes::table() routes a (method, path) twice: {registered:?}"
        );
        let doc = document();
        let documented: BTreeSet<(String, String)> = documented(&doc)
            .into_iter()
            .map(|(m, p, _)| (m, p))
            .collect();
        let undocumented: Vec<_> = routes.difference(&documented).collect();
        let phantom: Vec<_> = documented.difference(&routes).collect();
        assert!(
            undocumented.is_empty(),
            "routes registered in routes::table() but missing from the document: {undocumented:?}"
        );
        assert!(
            phantom.is_empty(),
            "the document has operations the server does not route: {phantom:?}"
        );
    }

    #[test]
    fn document_has_every_operation_with_its_parts() {
        let doc = document();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let mut ids = BTreeSet::new();
        for (method, path, o) in documented(&doc) {
            let at = format!("{method} {path}");
            assert!(
                o["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{at}: summary (the doc comment's first paragraph)"
            );
            assert!(
                !o["summary"].as_str().unwrap().contains('\n'),
                "{at}: a one-line summary"
            );
            let tag = o["tags"][0].as_str().unwrap_or_default();
            assert!(TAGS.iter().any(|(t, _)| *t == tag), "{at}: tag `{tag}`");
            assert!(
                ids.insert(o["operationId"].as_str().unwrap().to_owned()),
                "{at}: operationId"
            );
            let responses = o["responses"].as_object().unwrap();
            assert!(
                responses
                    .iter()
                    .any(|(s, r)| s.starts_with('2') && r["content"].is_object()),
                "{at}: success content"
            );
            for (status, r) in responses.iter().filter(|(s, _)| !s.starts_with('2')) {
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ApiError",
                    "{at} {status}: error envelope"
                );
            }
            let has = |status: &str| responses.contains_key(status);
            assert!(has("500"), "{at}: 500 (errors::Internal)");
            let body = &o["requestBody"];
            if matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
                assert!(
                    body["content"]["application/json"]["schema"].is_object(),
                    "{at}: request body"
                );
                assert_eq!(body["required"], true, "{at}: request body required");
            }
            if body.is_object() {
                for status in ["400", "408", "413", "415"] {
                    assert!(has(status), "{at}: {status} (a JSON body)");
                }
            }
            // Path parameters: exactly the `{name}` segments of the path, required.
            let in_path: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            let params = o["parameters"].as_array().cloned().unwrap_or_default();
            let declared: BTreeSet<&str> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(p["required"], true, "{at}: path parameter required");
                    p["name"].as_str().unwrap()
                })
                .collect();
            assert_eq!(in_path, declared, "{at}: path parameters");
            if !params.is_empty() {
                assert!(has("400"), "{at}: 400 (parameters)");
            }
            // An operation that asks for credentials answers 401 without them.
            let asks_credentials = o["security"]
                .as_array()
                .is_some_and(|reqs| reqs.iter().any(|r| !r.as_object().unwrap().is_empty()));
            if asks_credentials {
                assert!(has("401"), "{at}: 401 (`security(...)`)");
            }
        }
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = document();
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {r}"));
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "$ref {r} does not resolve"
            );
        }
        for (_, _, o) in documented(&doc) {
            for req in o["security"].as_array().into_iter().flatten() {
                for scheme in req.as_object().unwrap().keys() {
                    assert!(doc["components"]["securitySchemes"][scheme].is_object());
                }
            }
        }
    }
}
