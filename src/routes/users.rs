//! Accounts and sessions: signup, login, token refresh.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::auth::ClientIp;
use crate::error::ApiResult;
use crate::startup::AppState;

#[derive(Deserialize)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

pub async fn signup(
    state: web::Data<AppState>,
    ClientIp(ip): ClientIp,
    body: web::Json<Credentials>,
) -> ApiResult<HttpResponse> {
    let user = state
        .auth
        .signup(&body.email, &body.password, false, Some(&ip))
        .await?;
    Ok(super::data(
        json!({ "message": "Account created", "user": user }),
    ))
}

/// Failed logins are limited per account and per client IP; past the limit the answer is 429
/// `TOO_MANY_REQUESTS` with `Retry-After`, for right and wrong passwords alike.
pub async fn login(
    state: web::Data<AppState>,
    ClientIp(ip): ClientIp,
    body: web::Json<Credentials>,
) -> ApiResult<HttpResponse> {
    let pair = state.auth.login(&body.email, &body.password, &ip).await?;
    Ok(super::data(json!({
        "message": "Login successful",
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "id": pair.user_id,
    })))
}

#[derive(Deserialize)]
pub struct RefreshBody {
    pub refresh_token: String,
}

/// Refresh tokens rotate: the answer carries the next refresh token, and the one presented
/// is spent (presenting it again revokes the session).
pub async fn refresh(
    state: web::Data<AppState>,
    ClientIp(ip): ClientIp,
    body: web::Json<RefreshBody>,
) -> ApiResult<HttpResponse> {
    let pair = state.auth.refresh(&body.refresh_token, &ip).await?;
    Ok(super::data(json!({
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
    })))
}
