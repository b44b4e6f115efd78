//! The request middleware: an `X-Request-Id` on every response (the caller's, when it is a
//! sane token, else a new UUID), a tracing span carrying it around every log line of the
//! request, one log line per request (route pattern, never the raw path or any header), and
//! the request's metrics event (method, route pattern, status, latency) for the
//! `MetricsActor`; the bound on every request body ([`bounded_body`]) and on every answer
//! ([`bounded_answer`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{web, Error, HttpMessage};
use facilitator_actors::metrics::HttpEvent;
use futures::Stream;
use tracing::Instrument as _;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, for layers that answer without a response to add the header to.
#[derive(Clone)]
struct RequestId(String);

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
    req.extensions_mut().insert(RequestId(request_id.clone()));
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

/// How much of a request body the server holds (`server.body_limit_bytes`) and how long it
/// waits for the whole of it once the headers are in (`server.body_timeout_secs`).
#[derive(Debug, Clone, Copy)]
pub struct BodyBounds {
    pub limit: usize,
    pub timeout: Duration,
}

/// Every request body, before any extractor or authentication sees it: a declared length over
/// the limit is refused at once (413, nothing read); otherwise the body is read through
/// [`Bounded`], which fails the read once more than the limit has arrived (413) or when the
/// body is still incomplete at the deadline (408). So no request, authenticated or not, makes
/// the server hold more than the limit of its body, or wait on it longer than the timeout.
pub async fn bounded_body(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    if let Some(bounds) = req.app_data::<BodyBounds>().copied() {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > bounds.limit as u64) {
            let err = too_large(bounds.limit);
            return Ok(req.error_response(err).map_into_right_body());
        }
        let has_body = declared.is_some_and(|len| len > 0)
            || req.headers().contains_key(header::TRANSFER_ENCODING);
        if has_body {
            let body = Bounded {
                inner: req.take_payload(),
                read: 0,
                limit: bounds.limit,
                deadline: Box::pin(tokio::time::sleep(bounds.timeout)),
                ended: false,
            };
            let body: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(body);
            req.set_payload(Payload::from(body));
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// How long any request may wait for its answer (`server.answer_timeout_secs`).
#[derive(Debug, Clone, Copy)]
pub struct AnswerBound(pub Duration);

/// Every request is answered within its [`AnswerBound`]: the handler runs as a task of this
/// worker and, if it has not answered in time (a frozen database, an actor that does not
/// reply), the caller gets 503 `SERVICE_UNAVAILABLE` with `Retry-After` while the task goes
/// on to its end. Nothing is cut off halfway: a settle that was under way finishes and records
/// its outcome, which a retry with the same idempotency key then gets.
pub async fn bounded_answer(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let Some(AnswerBound(limit)) = req.app_data::<AnswerBound>().copied() else {
        return next.call(req).await;
    };
    let request_id = req.extensions().get::<RequestId>().map(|id| id.0.clone());
    let work = next.call(req);
    let (tx, rx) = tokio::sync::oneshot::channel();
    actix_web::rt::spawn(async move {
        let _ = tx.send(work.await);
    });
    // The late answer is an error the outer layers render in the envelope (the request itself
    // went with the task).
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(answer)) => answer,
        // The task was dropped: the worker is stopping.
        Ok(Err(_)) => Err(ApiError::internal().into()),
        Err(_) => {
            tracing::warn!(
                bound_secs = limit.as_secs(),
                "request not answered in time: answered 503, its work goes on"
            );
            let err = ApiError::new(
                ErrorCode::ServiceUnavailable,
                "Service temporarily unavailable",
                format!(
                    "not answered within {} s (the database or a node did not answer in time); \
                     its work goes on: retry later, a settle with the same Idempotency-Key",
                    limit.as_secs()
                ),
            )
            .retry_after(crate::error::UNAVAILABLE_RETRY_AFTER_SECS);
            Err(match request_id {
                Some(id) => err.with_header("x-request-id", id),
                None => err,
            }
            .into())
        }
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        "Request body too large",
        format!("limit is {limit} bytes"),
    )
}

/// A request body that ends in an error past `limit` bytes or at `deadline`.
struct Bounded<S> {
    inner: S,
    read: usize,
    limit: usize,
    deadline: Pin<Box<tokio::time::Sleep>>,
    ended: bool,
}

impl<S> Stream for Bounded<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.read = self.read.saturating_add(chunk.len());
                if self.read > self.limit {
                    self.ended = true;
                    return Poll::Ready(Some(Err(PayloadError::Overflow)));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(other) => {
                self.ended = other.is_none();
                Poll::Ready(other)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.ended = true;
                    Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "request body not complete before the deadline",
                    )))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
