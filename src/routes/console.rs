//! The console at `/console`: a small front end (HTML, one stylesheet, ES modules, no build
//! step) compiled into the binary, which calls this API from the same origin. Every answer
//! under `/console` carries a Content-Security-Policy that allows only this origin's scripts
//! and styles (no inline script, no `eval`), `X-Content-Type-Options: nosniff` and
//! `frame-ancestors 'none'`. The pages hold no data: what they show comes from the API, with
//! the API's own authorization.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpResponse};

/// Where the console is served.
pub const CONSOLE_PATH: &str = "/console";

/// The policy of every console answer: scripts, styles and API calls from this origin only;
/// no inline script or style, no `eval`, no plugin, no framing, forms post nowhere else.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                       form-action 'self'; frame-ancestors 'none'";

/// The console's files: (name, content type, bytes), all from the binary.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../console/assets/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../console/assets/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/assets/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/assets/api.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/assets/dom.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/assets/charts.js"),
    ),
    (
        "merchant.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/assets/merchant.js"),
    ),
    (
        "operator.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/assets/operator.js"),
    ),
];

/// The names of the console's files (for tests that fetch each).
pub fn asset_names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|(name, _, _)| *name)
}

fn serve(name: &str) -> HttpResponse {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, *content_type))
            // Small, and changed with the binary: revalidated on every load.
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(*body),
        None => super::not_found_response(),
    }
}

/// `GET /console` sends the browser to `/console/`, where the relative links resolve.
async fn redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "console/"))
        .finish()
}

async fn index() -> HttpResponse {
    serve("index.html")
}

async fn asset(file: web::Path<String>) -> HttpResponse {
    serve(&file)
}

/// The headers every console answer carries, its 404s and 405s included.
fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .add((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .add((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .add((
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(CONSOLE_PATH)
            .wrap(security_headers())
            .service(super::resource("", &[Method::GET]).route(web::get().to(redirect)))
            .service(super::resource("/", &[Method::GET]).route(web::get().to(index)))
            .service(super::resource("/{file}", &[Method::GET]).route(web::get().to(asset)))
            .default_service(web::to(super::not_found)),
    );
}
