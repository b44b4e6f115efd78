//! HTTP routes, one file per resource of the API reference. Handlers stay thin: parse, call a
//! handle, wrap the reply in `{"data": ...}`.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::error::{ApiError, ErrorCode};

pub mod admin;
pub mod assets;
pub mod clients;
pub mod health;
pub mod networks;
pub mod resources;
pub mod users;
pub mod x402;

/// `{"data": value}`, the success envelope.
pub fn data<T: Serialize>(value: T) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "data": value }))
}

pub fn created<T: Serialize>(value: T) -> HttpResponse {
    HttpResponse::Created().json(serde_json::json!({ "data": value }))
}

/// A resource whose unmatched methods answer 405 in our envelope.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed() -> HttpResponse {
    use actix_web::ResponseError;
    ApiError::new(ErrorCode::MethodNotAllowed, "Method not allowed", "").error_response()
}

pub async fn not_found() -> HttpResponse {
    use actix_web::ResponseError;
    ApiError::not_found("No such route").error_response()
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
        Ok((self.offset.unwrap_or(0), limit))
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/health").route(web::get().to(health::health)))
        .service(
            web::scope("/api/v1")
                .service(resource("/status").route(web::get().to(health::status)))
                .service(resource("/networks").route(web::get().to(networks::list)))
                .service(resource("/networks/{id}").route(web::get().to(networks::get_one)))
                .service(resource("/assets").route(web::get().to(assets::list)))
                .service(resource("/supported").route(web::get().to(x402::supported)))
                .service(resource("/verify").route(web::post().to(x402::verify)))
                .service(resource("/settle").route(web::post().to(x402::settle)))
                .service(resource("/settlements/{tx}").route(web::get().to(x402::settlement)))
                .service(resource("/signup").route(web::post().to(users::signup)))
                .service(resource("/login").route(web::post().to(users::login)))
                .service(resource("/token/refresh").route(web::post().to(users::refresh)))
                .service(
                    resource("/clients")
                        .route(web::post().to(clients::create))
                        .route(web::get().to(clients::list)),
                )
                .service(resource("/clients/{id}").route(web::delete().to(clients::revoke)))
                .service(
                    resource("/resources")
                        .route(web::post().to(resources::create))
                        .route(web::get().to(resources::list_all)),
                )
                .service(resource("/resources/{id}").route(web::put().to(resources::update)))
                .service(resource("/users/resources").route(web::get().to(resources::list_own)))
                .service(
                    resource("/discovery/resources").route(web::get().to(resources::discovery)),
                ),
        )
        .service(
            web::scope("/admin")
                .service(
                    resource("/users")
                        .route(web::post().to(admin::create_user))
                        .route(web::get().to(admin::list_users)),
                )
                .service(resource("/assets").route(web::post().to(admin::register_asset))),
        );
}
