//! The request middleware: an `X-Request-Id` on every response (the caller's, when it is a
//! sane token, else a new UUID), a tracing span carrying it around every log line of the
//! request, one log line per request (route pattern, never the raw path or any header), and
//! the request's metrics event (method, route pattern, status, latency) for the
//! `MetricsActor`.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, Error};
use facilitator_actors::metrics::HttpEvent;
use tracing::Instrument as _;

use crate::startup::AppState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A caller's request id is kept only if it cannot break a log line or a header.
fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // Standard methods only as a label: an arbitrary one must not mint new metric series.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => m.to_owned(),
        _ => "OTHER".to_owned(),
    };
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "(unmatched)".to_owned());
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.metrics.clone());
    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);
    let result = next.call(req).instrument(span.clone()).await;
    let status = match &result {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    let latency = started.elapsed();
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            latency_ms = latency.as_secs_f64() * 1000.0,
            "request finished"
        )
    });
    if let Some(metrics) = metrics {
        metrics.record_http(HttpEvent {
            day: chrono::Utc::now().date_naive(),
            method,
            route,
            status: status.as_u16(),
            latency,
        });
    }
    let mut res = result?;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    Ok(res)
}
