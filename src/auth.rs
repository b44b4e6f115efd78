//! Request extractors for the three credentials of the API reference: a user's JWT
//! (`Authorization: Bearer`), the static admin token (`/admin/*`), and a client key
//! (`X-Client-ID` + `X-Client-Token`, the x402 endpoints).

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use facilitator_actors::auth::{AuthUser, AuthenticatedClient};
use futures::future::LocalBoxFuture;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(ApiError::internal)
}

fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization header"))?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("expected `Authorization: Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized(
            "expected `Authorization: Bearer <token>`",
        ));
    }
    Ok(token.trim())
}

/// A user authenticated by an access token.
pub struct User(pub AuthUser);

impl FromRequest for User {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready((|| {
            let state = state(req)?;
            let token = bearer(req)?;
            Ok(User(state.auth.verify_access(token)?))
        })())
    }
}

/// The operator, authenticated by the static admin token.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready((|| {
            let state = state(req)?;
            let token = bearer(req)?;
            let expected = state.admin_token.expose_secret().as_bytes();
            if bool::from(token.as_bytes().ct_eq(expected)) {
                Ok(Admin)
            } else {
                Err(ApiError::unauthorized("invalid admin token"))
            }
        })())
    }
}

/// The `X-Client-ID` + `X-Client-Token` a request presents.
fn client_headers(req: &HttpRequest) -> Result<(String, String), ApiError> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    match (header("x-client-id"), header("x-client-token")) {
        (Some(id), Some(token)) => Ok((id, token)),
        _ => Err(ApiError::unauthorized(
            "missing X-Client-ID or X-Client-Token header",
        )),
    }
}

/// The caller's IP address, for the login, signup and refresh limits: the socket's peer, or
/// with `server.trust_forwarded_for` the client a trusted proxy names (`Forwarded` /
/// `X-Forwarded-For`).
pub struct ClientIp(pub String);

impl FromRequest for ClientIp {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let trust = req
            .app_data::<web::Data<AppState>>()
            .is_some_and(|s| s.trust_forwarded_for);
        let forwarded = trust
            .then(|| {
                req.connection_info()
                    .realip_remote_addr()
                    .map(str::to_owned)
            })
            .flatten();
        let ip = forwarded
            .map(|a| {
                // "1.2.3.4:5678" and "[::1]:5678" lose their port; a bare address stays.
                a.parse::<std::net::SocketAddr>()
                    .map(|s| s.ip().to_string())
                    .unwrap_or(a)
            })
            .or_else(|| req.peer_addr().map(|a| a.ip().to_string()))
            .unwrap_or_else(|| "unknown".to_owned());
        // Bounded: a forwarded value is the client's to write.
        ready(Ok(ClientIp(ip.chars().take(64).collect())))
    }
}

/// A client key's own credentials, checked but whatever the key's status (`/clients/status`).
pub struct ClientCredentials {
    pub client_id: String,
    pub token: String,
}

impl FromRequest for ClientCredentials {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(client_headers(req).map(|(client_id, token)| ClientCredentials { client_id, token }))
    }
}

/// A client key, authenticated from `X-Client-ID` + `X-Client-Token`.
pub struct Client(pub AuthenticatedClient);

impl Client {
    /// Require an operation in the key's scope.
    pub fn require(&self, operation: &str) -> Result<(), ApiError> {
        if self.0.allows(operation) {
            Ok(())
        } else {
            Err(ApiError::new(
                crate::error::ErrorCode::Forbidden,
                format!("this client key is not allowed to {operation}"),
                format!("scope: {}", self.0.scope.join(",")),
            ))
        }
    }

    /// Require the payment's network to be within the key's network limit.
    pub fn require_network(&self, network: &str) -> Result<(), ApiError> {
        if self.0.allows_network(network) {
            Ok(())
        } else {
            Err(ApiError::new(
                crate::error::ErrorCode::Forbidden,
                format!("this client key is not allowed on network {network}"),
                format!(
                    "networks: {}",
                    self.0.networks.as_deref().unwrap_or_default().join(",")
                ),
            ))
        }
    }
}

impl FromRequest for Client {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let credentials = client_headers(req);
        let state = state(req);
        Box::pin(async move {
            let state = state?;
            let (id, token) = credentials?;
            Ok(Client(state.auth.authenticate_client(&id, &token).await?))
        })
    }
}
