//! Throttling: failed logins per account and per client IP (in the database: a restart does
//! not reset them), signups and token refreshes per IP, and per-client-key rate limits on the
//! x402 endpoints (token buckets, 429 with `Retry-After` and `RateLimit-*`).

use std::time::{Duration, Instant};

use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::both_dbs;
use crate::helpers::*;

/// An app on `db` with these `limits` (the rest default).
async fn app_with_limits(db: TestDb, limits: Value) -> TestApp {
    TestApp::spawn_on(db, json!({ "limits": limits })).await
}

async fn login(app: &TestApp, email: &str, password: &str) -> Response {
    app.post(
        "/api/v1/login",
        None,
        json!({ "email": email, "password": password }),
    )
    .await
}

/// A 429 in the envelope, with its `Retry-After` (seconds).
async fn assert_throttled(res: Response) -> u64 {
    let retry_after: u64 = res
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let err = assert_error(res, 429, "TOO_MANY_REQUESTS", None).await;
    assert_eq!(err["details"], format!("retry after {retry_after} s"));
    retry_after
}

async fn failed_logins_lock_the_account(kind: Db) {
    let limits = json!({
        "login_failures_per_account": 5,
        "login_failures_per_ip": 1000,
        "login_lockout_secs": 10,
        "login_window_secs": 600,
    });
    let app = app_with_limits(TestDb::create(kind).await, limits.clone()).await;
    app.signup("victim@example.com").await;

    // 30 wrong passwords at once: five are judged (401), the other 25 refused (429).
    let started = Instant::now();
    let answers = futures::future::join_all(
        (0..30).map(|_| login(&app, "victim@example.com", "wrong password!!")),
    )
    .await;
    let mut statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    assert_eq!(
        (
            statuses.iter().filter(|s| **s == 401).count(),
            statuses.iter().filter(|s| **s == 429).count()
        ),
        (5, 25),
        "{statuses:?} in {:?}",
        started.elapsed()
    );
    for res in answers.into_iter().filter(|r| r.status() == 429) {
        assert_throttled(res).await;
    }
    // Locked: the right password is refused too, alike.
    assert_throttled(login(&app, "victim@example.com", PASSWORD).await).await;
    // Another account is not affected.
    app.signup("bystander@example.com").await;
    assert_eq!(
        login(&app, "bystander@example.com", PASSWORD)
            .await
            .status(),
        200
    );

    // A restart keeps the lock.
    let app = app_with_limits(app.stop().await, limits).await;
    let retry_after = assert_throttled(login(&app, "victim@example.com", PASSWORD).await).await;
    assert!(retry_after <= 10);

    // After the lock, the right password logs in (and starts the account over).
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let res = login(&app, "victim@example.com", PASSWORD).await;
        if res.status() == 200 {
            break;
        }
        let wait = assert_throttled(res).await;
        assert!(Instant::now() < deadline, "still locked");
        // Waiting out the lock is the behaviour under test: Retry-After says how long.
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
    // Started over: four more failures are judged as such.
    for _ in 0..4 {
        assert_eq!(
            login(&app, "victim@example.com", "wrong password!!")
                .await
                .status(),
            401
        );
    }
    assert_eq!(
        login(&app, "victim@example.com", PASSWORD).await.status(),
        200,
        "a success resets the count"
    );
}

#[actix_web::test]
async fn failed_logins_lock_the_account_across_a_restart_sqlite() {
    failed_logins_lock_the_account(Db::Sqlite).await
}

#[actix_web::test]
async fn failed_logins_lock_the_account_across_a_restart_postgres() {
    failed_logins_lock_the_account(Db::Postgres).await
}

async fn failed_logins_lock_the_address(kind: Db) {
    let app = app_with_limits(
        TestDb::create(kind).await,
        json!({
            "login_failures_per_account": 100,
            "login_failures_per_ip": 6,
            "login_lockout_secs": 60,
        }),
    )
    .await;
    app.signup("real@example.com").await;
    // Guessing across many accounts from one address...
    for i in 0..6 {
        let res = login(&app, &format!("guess{i}@example.com"), "wrong password!!").await;
        assert_eq!(res.status(), 401);
    }
    // ...locks the address, for any account and any password.
    assert_throttled(login(&app, "guess9@example.com", "wrong password!!").await).await;
    assert_throttled(login(&app, "real@example.com", PASSWORD).await).await;
}

#[actix_web::test]
async fn failed_logins_lock_the_address_sqlite() {
    failed_logins_lock_the_address(Db::Sqlite).await
}

#[actix_web::test]
async fn failed_logins_lock_the_address_postgres() {
    failed_logins_lock_the_address(Db::Postgres).await
}

both_dbs!(signups_and_refreshes_are_limited_per_address, |app| {
    let db = app.stop().await;
    let app = app_with_limits(
        db,
        json!({ "signups_per_ip": 3, "refreshes_per_ip": 3, "refresh_window_secs": 60 }),
    )
    .await;
    for i in 0..3 {
        app.signup(&format!("user{i}@example.com")).await;
    }
    let res = app
        .post(
            "/api/v1/signup",
            None,
            json!({ "email": "user9@example.com", "password": PASSWORD }),
        )
        .await;
    assert_throttled(res).await;

    let body: Value = login(&app, "user0@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let mut refresh = body["data"]["refresh_token"].as_str().unwrap().to_owned();
    for i in 0..4 {
        let res = app
            .post(
                "/api/v1/token/refresh",
                None,
                json!({ "refresh_token": refresh }),
            )
            .await;
        if i == 3 {
            assert_throttled(res).await;
            break;
        }
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        refresh = body["data"]["refresh_token"].as_str().unwrap().to_owned();
    }
});

async fn patch_client(app: &TestApp, id: &str, body: Value) -> Response {
    app.request(
        Method::PATCH,
        &format!("/admin/clients/{id}"),
        Some(ADMIN_TOKEN),
        Some(body),
    )
    .await
}

/// One header of a response, as a number.
fn number(res: &Response, name: &str) -> u64 {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} header"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

both_dbs!(a_rate_limited_key_gets_429_and_others_do_not, |app| {
    let (access, _, _) = app.user("busy@example.com").await;
    let (limited, limited_token) = app.client_key(&access, "verify,settle").await;
    let (free, free_token) = app.client_key(&access, "verify,settle").await;
    let res = patch_client(&app, &limited, json!({ "rateLimitPerSecond": 5 })).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"]["client"]["rateLimitPerSecond"], 5);

    // A burst of 40: the bucket lets 5 through (and what refills meanwhile), then 429s.
    let burst = |id: String, token: String| {
        let app = &app;
        async move {
            futures::future::join_all(
                (0..40).map(|_| app.get_as_client("/api/v1/supported", &id, &token)),
            )
            .await
        }
    };
    let started = Instant::now();
    let answers = burst(limited.clone(), limited_token.clone()).await;
    let elapsed = started.elapsed().as_secs_f64();
    let (ok, refused): (Vec<Response>, Vec<Response>) =
        answers.into_iter().partition(|r| r.status() == 200);
    // 5 at once, plus at most one per 200 ms while the burst lasted.
    let refill = (elapsed * 5.0).ceil() as usize;
    assert!(
        ok.len() >= 5 && ok.len() <= 5 + refill,
        "{} let through in {elapsed:.2} s",
        ok.len()
    );
    for res in &ok {
        assert_eq!(number(res, "ratelimit-limit"), 5);
        assert!(number(res, "ratelimit-remaining") < 5);
    }
    assert_eq!(ok.len() + refused.len(), 40);
    for res in refused {
        assert_eq!(number(&res, "ratelimit-limit"), 5);
        assert_eq!(number(&res, "ratelimit-remaining"), 0);
        assert!(number(&res, "ratelimit-reset") >= 1);
        assert_throttled(res).await;
    }
    // Verify and settle share the bucket: refused too while it is empty.
    let res = app
        .post_as_client("/api/v1/verify", &limited, &limited_token, &json!({}))
        .await;
    assert_throttled(res).await;

    // The other key is unaffected.
    let answers = burst(free.clone(), free_token.clone()).await;
    assert!(answers.iter().all(|r| r.status() == 200));
    assert!(
        answers[0].headers().get("ratelimit-limit").is_none(),
        "unlimited"
    );

    // Back to the default (unlimited here): all pass.
    let res = patch_client(&app, &limited, json!({ "rateLimitPerSecond": null })).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"]["client"]["rateLimitPerSecond"], Value::Null);
    let answers = burst(limited, limited_token).await;
    assert!(answers.iter().all(|r| r.status() == 200));

    // Bad values.
    for bad in [json!(-1), json!("ten"), json!(1.5), json!(1_000_001)] {
        let res = patch_client(&app, &free, json!({ "rateLimitPerSecond": bad })).await;
        assert_error(res, 400, "INVALID_REQUEST", None).await;
    }
});

// The configured default applies to every key without its own limit.
both_dbs!(the_default_rate_limit_applies_to_every_key, |app| {
    let db = app.stop().await;
    let app = app_with_limits(db, json!({ "client_rate_limit_per_second": 2 })).await;
    let (access, _, _) = app.user("default@example.com").await;
    let (id, token) = app.client_key(&access, "verify").await;
    let answers = futures::future::join_all(
        (0..10).map(|_| app.get_as_client("/api/v1/supported", &id, &token)),
    )
    .await;
    assert!(answers.iter().any(|r| r.status() == 429));
    assert!(answers.iter().filter(|r| r.status() == 200).count() >= 2);
    // 0 for one key: unlimited for it.
    let res = patch_client(&app, &id, json!({ "rateLimitPerSecond": 0 })).await;
    assert_eq!(res.status(), 200);
    let answers = futures::future::join_all(
        (0..10).map(|_| app.get_as_client("/api/v1/supported", &id, &token)),
    )
    .await;
    assert!(answers.iter().all(|r| r.status() == 200));
});
