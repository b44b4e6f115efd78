//! A merchant's webhook receiver on loopback: a real HTTP server that checks each request's
//! signature as the API description tells receivers to (HMAC-SHA256 over `"{t}.{body}"`,
//! written here with `hmac`, not with the code under test), answers a scripted status, and
//! records what it got.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::*;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub event_id: String,
    pub event_type: String,
    pub body: Value,
    /// The signature verified with the endpoint's secret, `t` within 300 s.
    pub signed: bool,
    /// The status answered.
    pub answered: u16,
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    secret: Mutex<Option<String>>,
    hits: Mutex<Vec<Hit>>,
    /// The statuses of the first requests; then 200.
    script: Mutex<Vec<u16>>,
}

pub struct Receiver {
    pub port: u16,
    inner: Arc<Inner>,
    server: actix_web::dev::ServerHandle,
}

/// What a receiver does with `X402-Signature: t=…,v1=…`.
pub fn signature_ok(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1.push(v.to_owned()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    let now = chrono::Utc::now().timestamp();
    if (now - t).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected = alloy::hex::encode(mac.finalize().into_bytes());
    v1.contains(&expected)
}

async fn receive(req: HttpRequest, body: web::Bytes, inner: web::Data<Inner>) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let secret = inner.secret.lock().unwrap().clone().unwrap_or_default();
    let signed = signature_ok(&secret, &header("X402-Signature"), &body);
    let answered = {
        let mut script = inner.script.lock().unwrap();
        if script.is_empty() {
            200
        } else {
            script.remove(0)
        }
    };
    inner.hits.lock().unwrap().push(Hit {
        event_id: header("X402-Event-Id"),
        event_type: header("X402-Event-Type"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        signed,
        answered,
        at: Instant::now(),
    });
    HttpResponse::build(actix_web::http::StatusCode::from_u16(answered).unwrap()).finish()
}

impl Receiver {
    /// Listening on `host` (`127.0.0.1` or `::1`); the first requests answer `script`.
    pub fn start(host: &str, script: Vec<u16>) -> Self {
        let listener = TcpListener::bind((host, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let inner = Arc::new(Inner {
            script: Mutex::new(script),
            ..Default::default()
        });
        let data = web::Data::from(inner.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Self {
            port,
            inner,
            server: handle,
        }
    }

    pub fn set_secret(&self, secret: &str) {
        *self.inner.secret.lock().unwrap() = Some(secret.to_owned());
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.inner.hits.lock().unwrap().clone()
    }

    /// Poll (bounded) until `done` holds of the hits.
    pub async fn until(&self, what: &str, secs: u64, done: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let hits = self.hits();
            if done(&hits) {
                return hits;
            }
            assert!(Instant::now() < deadline, "never {what}: {hits:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(&self) {
        self.server.stop(false).await;
    }
}

/// Settings for fast deliveries in tests, to loopback only when `allow` says so.
pub fn fast_webhooks(allow: &[&str]) -> Value {
    json!({
        "allow_hosts": allow,
        "poll_interval_ms": 50,
        "backoff_base_ms": 200,
        "backoff_max_secs": 2,
        "timeout_secs": 2,
        "lease_secs": 5,
    })
}

/// Register an endpoint; the receiver learns its secret. Returns the endpoint's id.
pub async fn subscribe(
    app: &TestApp,
    access: &str,
    receiver: &Receiver,
    url: &str,
    events: &[&str],
) -> i64 {
    let res = app
        .post(
            "/api/v1/webhooks",
            Some(access),
            json!({ "url": url, "events": events }),
        )
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    let secret = body["data"]["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    receiver.set_secret(secret);
    body["data"]["webhook"]["id"].as_i64().unwrap()
}

/// The endpoint's delivery log (`data.deliveries`).
pub async fn deliveries(app: &TestApp, access: &str, id: i64) -> Vec<Value> {
    let res = app
        .get(&format!("/api/v1/webhooks/{id}/deliveries"), Some(access))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["data"]["deliveries"].as_array().unwrap().clone()
}

/// Poll (bounded, 20 s) the endpoint's delivery log until `done` holds of it.
pub async fn deliveries_until(
    app: &TestApp,
    access: &str,
    id: i64,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = deliveries(app, access, id).await;
        if done(&log) {
            return log;
        }
        assert!(Instant::now() < deadline, "never {what}: {log:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
