//! Log hygiene: the real binary, JSON logs at debug level, the whole flow (signup, a failed
//! login, login, refresh, client key, verify, settle, admin calls with a good and a bad
//! token). Every line is JSON and carries its request's id; none of the secrets used appears
//! anywhere in what the process printed.

use devnet::{Devnet, DevnetOptions};
use serde_json::{json, Value};

use crate::chain_helpers::*;
use crate::helpers::*;
use crate::process::{post_json, Facilitator};

/// `signal` stops the process at the end: SIGTERM and SIGINT are both graceful.
async fn flow(kind: Db, signal: &str) {
    let devnet = Devnet::start(DevnetOptions::default()).await.unwrap();
    let db = TestDb::create(kind).await;
    let f = Facilitator::start_with(&db.url, &devnet, &[("RUST_LOG", "debug")]);
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", f.url);

    let wrong_password = "not-the-password-9b1f2e";
    let creds = json!({ "email": "logs@example.com", "password": PASSWORD });
    assert_eq!(
        http.post(url("/api/v1/signup"))
            .json(&creds)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let res = http
        .post(url("/api/v1/login"))
        .json(&json!({ "email": "logs@example.com", "password": wrong_password }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let login = post_json(&http, &url("/api/v1/login"), None, &creds).await;
    let first_refresh = login["data"]["refresh_token"].as_str().unwrap().to_owned();
    let refreshed = post_json(
        &http,
        &url("/api/v1/token/refresh"),
        None,
        &json!({ "refresh_token": first_refresh }),
    )
    .await;
    let access = refreshed["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let second_refresh = refreshed["data"]["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = post_json(
        &http,
        &url("/api/v1/clients"),
        Some(&access),
        &json!({ "title": "shop", "scope": "verify,settle" }),
    )
    .await;
    let client_id = client["data"]["client"]["clientId"].as_str().unwrap();
    let client_token = client["data"]["client"]["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let payer = devnet.payers[0].clone();
    let pay = Payment::usdc(payer.address(), devnet.chain_id, devnet.usdc, 2_500);
    let body = pay.v1(&pay.sign(&payer), 2_500);
    for path in ["/api/v1/verify", "/api/v1/settle"] {
        let answer: Value = http
            .post(url(path))
            .header("X-Client-ID", client_id)
            .header("X-Client-Token", &client_token)
            .header("X-Request-Id", "log-scan-request")
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            answer["isValid"] == true || answer["success"] == true,
            "{answer}"
        );
    }
    // A wrong client token and a wrong admin token: refused, and not logged either.
    let wrong_client_token = "ck_wrong_token_7f3a9c0d5e";
    let res = http
        .post(url("/api/v1/verify"))
        .header("X-Client-ID", client_id)
        .header("X-Client-Token", wrong_client_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        http.get(url("/admin/users"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let wrong_admin = "wrong-admin-token-0123456789abcdef";
    assert_eq!(
        http.get(url("/admin/users"))
            .bearer_auth(wrong_admin)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let (exit, lines) = f.stop_with(signal);
    assert!(exit.success(), "graceful exit");
    assert!(
        lines.iter().any(|l| l.contains("stopping gracefully"))
            && lines.iter().any(|l| l.contains("metrics flushed; stopped")),
        "graceful shutdown flushed the metrics; last lines: {:#?}",
        &lines[lines.len().saturating_sub(8)..]
    );

    // The logs are real: JSON lines, request lines carry their request id and route.
    assert!(lines.len() > 20, "too few log lines: {lines:?}");
    for line in &lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    let settle_line = lines
        .iter()
        .find(|l| l.contains("request finished") && l.contains("\"/api/v1/settle\""))
        .expect("a log line for the settle request");
    assert!(
        settle_line.contains("log-scan-request"),
        "request id in the line: {settle_line}"
    );

    let signer_key = alloy::hex::encode(devnet.facilitator_keys[0].to_bytes());
    let payer_key = alloy::hex::encode(payer.to_bytes());
    let secrets = [
        ("password", PASSWORD),
        ("wrong password", wrong_password),
        ("access token", access.as_str()),
        ("first refresh token", first_refresh.as_str()),
        ("second refresh token", second_refresh.as_str()),
        ("client token", client_token.as_str()),
        ("wrong client token", wrong_client_token),
        ("admin token", ADMIN_TOKEN),
        ("wrong admin token", wrong_admin),
        ("JWT secret", JWT_SECRET),
        ("client-token HMAC key", CLIENT_KEY),
        ("signer private key", signer_key.as_str()),
        ("payer private key", payer_key.as_str()),
    ];
    for (what, secret) in secrets {
        // The JWT's signature part is what makes it a credential; check it alone too.
        let needles: Vec<&str> = std::iter::once(secret)
            .chain(secret.rsplit('.').next().filter(|s| s.len() >= 20))
            .collect();
        for needle in needles {
            if let Some(line) = lines.iter().find(|l| l.contains(needle)) {
                panic!("the {what} appears in the logs: {line}");
            }
        }
    }
    drop(db);
}

#[actix_web::test]
async fn no_secret_reaches_the_logs_sqlite_sigterm() {
    flow(Db::Sqlite, "TERM").await
}

#[actix_web::test]
async fn no_secret_reaches_the_logs_postgres_sigint() {
    flow(Db::Postgres, "INT").await
}
