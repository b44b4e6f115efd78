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
use crate::startup::AppState;

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
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let id = header("x-client-id");
        let token = header("x-client-token");
        let state = state(req);
        Box::pin(async move {
            let state = state?;
            let (Some(id), Some(token)) = (id, token) else {
                return Err(ApiError::unauthorized(
                    "missing X-Client-ID or X-Client-Token header",
                ));
            };
            Ok(Client(state.auth.authenticate_client(&id, &token).await?))
        })
    }
}
