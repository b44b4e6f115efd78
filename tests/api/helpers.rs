//! `TestApp::spawn`: the production `Application` on port 0 against a fresh database.

use std::path::PathBuf;

use figment::providers::Serialized;
use reqwest::{Client, Method, Response};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{json, Value};
use x402_facilitator::config::Settings;
use x402_facilitator::startup::Application;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123456789";
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef0123456789ab";
pub const CLIENT_KEY: &str = "test-client-key-0123456789abcdef0123456789ab";
pub const PASSWORD: &str = "correct horse battery";
const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A database for one test; dropped (PostgreSQL) or deleted (SQLite) at the end, even when the
/// test panics.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn create(kind: Db) -> Self {
        match kind {
            Db::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let path: PathBuf = dir.path().join("facilitator.sqlite");
                Self {
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    pg_name: None,
                    _dir: Some(dir),
                }
            }
            Db::Postgres => {
                let name = format!("x402_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(PG_ADMIN_URL)
                    .await
                    .expect("PostgreSQL must run on 127.0.0.1:5432 (see README)");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                Self {
                    url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                    pg_name: Some(name),
                    _dir: None,
                }
            }
        }
    }
}

impl TestDb {
    /// A second handle on a database another `TestDb` owns (a second instance on it): this
    /// one cleans nothing up.
    pub fn attach(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            pg_name: None,
            _dir: None,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Drop runs outside any runtime we may block: use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    if let Ok(admin) = Database::connect(PG_ADMIN_URL).await {
                        let _ = admin
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            ))
                            .await;
                        admin.close().await.ok();
                    }
                });
            })
            .join();
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub http: Client,
    pub db: TestDb,
    server: actix_web::dev::ServerHandle,
    /// The application's run loop (serve, then the final metrics flush).
    task: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
}

/// The application's logs, when `TEST_LOG` holds a filter (`TEST_LOG=info,sqlx=warn`): to the
/// test's captured output, shown when it fails. Off by default.
fn init_test_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// Settings for a test: defaults, fixed secrets, port 0, the given database; `extra` overrides.
pub fn test_settings(db_url: &str, extra: Value) -> Settings {
    init_test_log();
    let mut figment = Settings::figment(std::path::Path::new("/nonexistent/config.yaml")).merge(
        Serialized::defaults(json!({
            "server": { "host": "127.0.0.1", "port": 0, "workers": 1 },
            // Throwaway databases: commits need not wait for the disk, which the whole suite
            // shares (PostgreSQL's DROP DATABASE forces a checkpoint per test).
            "database": { "url": db_url, "max_connections": 5, "durable_commits": false },
            "auth": {
                "jwt_secret": JWT_SECRET,
                "admin_token": ADMIN_TOKEN,
                "client_token_key": CLIENT_KEY,
            },
            "networks": { "base_sepolia": { "rpc_url": "http://127.0.0.1:9" } },
            // The payment-channel preview (off by default) is served in tests, so its kind is
            // in every `/supported`; `health::channels_are_off_by_default` checks the default.
            "settlement": { "channels": true },
        })),
    );
    figment = figment.merge(Serialized::defaults(extra));
    figment.extract().expect("test settings")
}

impl TestApp {
    pub async fn spawn(kind: Db) -> Self {
        let db = TestDb::create(kind).await;
        Self::spawn_on(db, json!({})).await
    }

    /// Start the application on an existing database (restart tests).
    pub async fn spawn_on(db: TestDb, extra: Value) -> Self {
        let settings = test_settings(&db.url, extra);
        let app = Application::build(settings).await.expect("build app");
        Self::from_application(app, db)
    }

    pub fn from_application(app: Application, db: TestDb) -> Self {
        let port = app.port();
        let server = app.server_handle();
        let task = actix_web::rt::spawn(app.run_until_stopped());
        Self {
            address: format!("http://127.0.0.1:{port}"),
            port,
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            db,
            server,
            task,
        }
    }

    /// Stop the server gracefully, wait for its shutdown work (the final metrics flush), and
    /// hand back the database.
    pub async fn stop(self) -> TestDb {
        self.server.stop(true).await;
        self.task.await.expect("run loop").expect("server error");
        self.db
    }

    /// Poll `/ready` (bounded, 15 s) until it answers `status`; its body.
    pub async fn ready_until(&self, status: u16) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let res = self.get("/ready", None).await;
            let got = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            if got == status {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "/ready still {got}: {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut req = self.http.request(method, self.url(path));
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("request")
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Response {
        self.request(Method::GET, path, bearer, None).await
    }

    pub async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> Response {
        self.request(Method::POST, path, bearer, Some(body)).await
    }

    pub async fn signup(&self, email: &str) -> Value {
        let res = self
            .post(
                "/api/v1/signup",
                None,
                json!({ "email": email, "password": PASSWORD }),
            )
            .await;
        assert_eq!(res.status(), 200, "signup {email}");
        res.json().await.unwrap()
    }

    /// Log in an existing user (password `PASSWORD`); returns the access token.
    pub async fn login(&self, email: &str) -> String {
        let res = self
            .post(
                "/api/v1/login",
                None,
                json!({ "email": email, "password": PASSWORD }),
            )
            .await;
        assert_eq!(res.status(), 200, "login {email}");
        let body: Value = res.json().await.unwrap();
        body["data"]["access_token"].as_str().unwrap().to_owned()
    }

    /// Sign up and log in; returns (access token, refresh token, user id).
    pub async fn user(&self, email: &str) -> (String, String, i64) {
        self.signup(email).await;
        let body: Value = self
            .post(
                "/api/v1/login",
                None,
                json!({ "email": email, "password": PASSWORD }),
            )
            .await
            .json()
            .await
            .unwrap();
        (
            body["data"]["access_token"].as_str().unwrap().to_owned(),
            body["data"]["refresh_token"].as_str().unwrap().to_owned(),
            body["data"]["id"].as_i64().unwrap(),
        )
    }

    /// Create a client key; returns (clientId, token).
    pub async fn client_key(&self, access: &str, scope: &str) -> (String, String) {
        self.client_key_with(access, json!({ "title": "test server", "scope": scope }))
            .await
    }

    /// Create a client key from a full request body; returns (clientId, token).
    pub async fn client_key_with(&self, access: &str, body: Value) -> (String, String) {
        let res = self.post("/api/v1/clients", Some(access), body).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        (
            body["data"]["client"]["clientId"]
                .as_str()
                .unwrap()
                .to_owned(),
            body["data"]["client"]["token"].as_str().unwrap().to_owned(),
        )
    }

    /// POST a JSON body with client-key headers.
    pub async fn post_as_client(
        &self,
        path: &str,
        id: &str,
        token: &str,
        body: &Value,
    ) -> Response {
        self.http
            .post(self.url(path))
            .header("X-Client-ID", id)
            .header("X-Client-Token", token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// GET with client-key headers.
    pub async fn get_as_client(&self, path: &str, id: &str, token: &str) -> Response {
        self.http
            .get(self.url(path))
            .header("X-Client-ID", id)
            .header("X-Client-Token", token)
            .send()
            .await
            .expect("request")
    }
}

/// Move a client key's expiry into the past (there is no clock to fast-forward).
pub async fn expire_client_key(db_url: &str, client_id: &str) {
    use sea_orm::ConnectionTrait;
    let db = Database::connect(db_url).await.unwrap();
    let past = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let sql = match db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => format!(
            "UPDATE clients SET expires_at = '{past}'::timestamptz WHERE client_id = '{client_id}'"
        ),
        _ => format!("UPDATE clients SET expires_at = '{past}' WHERE client_id = '{client_id}'"),
    };
    db.execute_unprepared(&sql).await.unwrap();
    db.close().await.ok();
}

/// Assert an error body field by field.
pub async fn assert_error(res: Response, status: u16, code: &str, message: Option<&str>) -> Value {
    assert_eq!(res.status().as_u16(), status, "status");
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/json",
        "error bodies are JSON"
    );
    let body: Value = res.json().await.expect("error body is JSON");
    assert_eq!(body["code"], code, "code in {body}");
    assert!(body["message"].is_string(), "message in {body}");
    assert!(body["details"].is_string(), "details in {body}");
    if let Some(m) = message {
        assert_eq!(body["message"], m, "message in {body}");
    }
    let obj = body.as_object().unwrap();
    assert_eq!(obj.len(), 3, "exactly code, message, details: {body}");
    body
}

/// An app a `both_dbs!` test starts on a fresh database; `Options` is what else it takes.
pub trait DbApp: Sized {
    type Options: Default;
    fn start(kind: Db, options: Self::Options) -> impl std::future::Future<Output = Self>;
}

impl DbApp for TestApp {
    type Options = ();
    fn start(kind: Db, (): ()) -> impl std::future::Future<Output = Self> {
        Self::spawn(kind)
    }
}

/// Run one async test on SQLite and on PostgreSQL, as `name::sqlite` and `name::postgres`:
/// - `both_dbs!(name, |app| { … })`: the body gets a fresh `TestApp`;
/// - `both_dbs!(name, |app: ChainApp| { … })`: any `DbApp`, started with default options;
/// - `both_dbs!(name, options, |app: ChainApp| { … })`: started with `options`;
/// - `both_dbs!(name)`: `async fn name(kind: Db)` starts what it needs itself.
#[macro_export]
macro_rules! both_dbs {
    ($name:ident) => {
        mod $name {
            #[actix_web::test]
            async fn sqlite() {
                super::$name($crate::helpers::Db::Sqlite).await
            }

            #[actix_web::test]
            async fn postgres() {
                super::$name($crate::helpers::Db::Postgres).await
            }
        }
    };
    ($name:ident, |$app:ident| $body:block) => {
        $crate::both_dbs!($name, |$app: $crate::helpers::TestApp| $body);
    };
    ($name:ident, |$app:ident: $ty:ty| $body:block) => {
        $crate::both_dbs!($name, ::std::default::Default::default(), |$app: $ty| $body);
    };
    ($name:ident, $options:expr, |$app:ident: $ty:ty| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use $crate::helpers::*;

            async fn run($app: $ty) $body

            #[actix_web::test]
            async fn sqlite() {
                let kind = $crate::helpers::Db::Sqlite;
                run(<$ty as $crate::helpers::DbApp>::start(kind, $options).await).await
            }

            #[actix_web::test]
            async fn postgres() {
                let kind = $crate::helpers::Db::Postgres;
                run(<$ty as $crate::helpers::DbApp>::start(kind, $options).await).await
            }
        }
    };
}
