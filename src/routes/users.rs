//! Accounts and sessions: signup, login, token refresh, and the signed-in user's account.

use actix_web::{web, HttpResponse};
use facilitator_actors::auth::accounts::{self, AccountView};
use serde::Deserialize;
use utoipa::ToSchema;

use super::docs::errors;
use super::Data;
use crate::auth::{ClientIp, User};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// An email and a password.
#[derive(Deserialize, ToSchema)]
pub struct Credentials {
    #[schema(example = "user@example.com")]
    pub email: String,
    /// At signup, at least `auth.min_password_length` characters (10 by default) and at most
    /// 256 bytes.
    #[schema(example = "StrongPassword123!", format = Password, min_length = 10, max_length = 256)]
    pub password: String,
}

/// Create an account
#[utoipa::path(
    post,
    path = "/api/v1/signup",
    tag = "Auth",
    request_body = Credentials,
    responses(
        (status = 200, description = "The account.", body = Data<schema::UserCreated>),
        (status = 409, description = "`CONFLICT`: the email is taken.", body = ApiError),
        errors::BadRequest,
        errors::JsonBody,
        errors::Throttled,
        errors::Internal,
    ),
)]
pub async fn signup(
    state: web::Data<AppState>,
    ClientIp(ip): ClientIp,
    body: web::Json<Credentials>,
) -> ApiResult<HttpResponse> {
    let user = state
        .auth
        .signup(&body.email, &body.password, false, Some(&ip))
        .await?;
    super::data_sorted(schema::UserCreated {
        message: "Account created".to_owned(),
        user,
    })
}

/// Log in
///
/// Exchanges email and password for an access token and a refresh token. Failed logins are
/// limited per account and per client IP: past the limit the answer is 429
/// `TOO_MANY_REQUESTS` with `Retry-After`, for right and wrong passwords alike.
#[utoipa::path(
    post,
    path = "/api/v1/login",
    tag = "Auth",
    request_body = Credentials,
    responses(
        (status = 200, description = "The session's tokens.", body = Data<schema::LoginResponse>),
        (status = 401, description = "`UNAUTHORIZED`: invalid email or password.", body = ApiError),
        errors::BadRequest,
        errors::JsonBody,
        errors::Throttled,
        errors::Internal,
    ),
)]
pub async fn login(
    state: web::Data<AppState>,
    ClientIp(ip): ClientIp,
    body: web::Json<Credentials>,
) -> ApiResult<HttpResponse> {
    let pair = state.auth.login(&body.email, &body.password, &ip).await?;
    super::data_sorted(schema::LoginResponse {
        message: "Login successful".to_owned(),
        access_token: pair.access_token,
        refresh_token: pair.refresh_token,
        id: pair.user_id,
    })
}

#[derive(Deserialize, ToSchema)]
#[schema(as = RefreshRequest)]
pub struct RefreshBody {
    /// From `POST /api/v1/login` or the previous refresh.
    pub refresh_token: String,
}

/// Refresh the session
///
/// Exchanges a refresh token for a new access token and a new refresh token. Refresh tokens
/// rotate: the one presented is spent, and presenting it again revokes the session.
#[utoipa::path(
    post,
    path = "/api/v1/token/refresh",
    tag = "Auth",
    request_body = RefreshBody,
    responses(
        (status = 200, description = "The new tokens.", body = Data<schema::TokenPair>),
        (status = 401, description = "`UNAUTHORIZED` (`invalid session token`): expired, revoked or reused refresh token.", body = ApiError),
        errors::BadRequest,
        errors::JsonBody,
        errors::Throttled,
        errors::Internal,
    ),
)]
pub async fn refresh(
    state: web::Data<AppState>,
    ClientIp(ip): ClientIp,
    body: web::Json<RefreshBody>,
) -> ApiResult<HttpResponse> {
    let pair = state.auth.refresh(&body.refresh_token, &ip).await?;
    super::data_sorted(schema::TokenPair {
        access_token: pair.access_token,
        refresh_token: pair.refresh_token,
    })
}

/// Your account
///
/// The signed-in user's account: its limits, which bind all its keys together (settle
/// credits, rate limit, daily gas budget), what is left of them, the gas its keys spent today
/// (UTC) in total and per key, and its keys and resources against their caps.
#[utoipa::path(
    get,
    path = "/api/v1/users/me",
    tag = "Auth",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "Your account.", body = Data<AccountView>),
        errors::UserAuth,
        errors::Internal,
    ),
)]
pub async fn me(state: web::Data<AppState>, User(user): User) -> ApiResult<HttpResponse> {
    let view =
        accounts::account_view(&state.db, &state.metrics, state.auth.caps(), user.id).await?;
    Ok(super::data(view))
}

/// The answers of the handlers above.
pub mod schema {
    use facilitator_actors::auth::UserView;
    use serde::Serialize;
    use utoipa::ToSchema;

    /// A new account.
    #[derive(Serialize, ToSchema)]
    pub struct UserCreated {
        /// `Account created` (signup) or `User created` (admin).
        #[schema(example = "Account created")]
        pub message: String,
        pub user: UserView,
    }

    #[derive(Serialize, ToSchema)]
    pub struct LoginResponse {
        #[schema(example = "Login successful")]
        pub message: String,
        /// Access token (JWT) for `bearerAuth`.
        pub access_token: String,
        /// Refresh token for `POST /api/v1/token/refresh`.
        pub refresh_token: String,
        /// The user's id.
        pub id: i64,
    }

    /// Refresh tokens rotate: the one presented is spent, use the new one next time.
    #[derive(Serialize, ToSchema)]
    pub struct TokenPair {
        pub access_token: String,
        pub refresh_token: String,
    }
}
