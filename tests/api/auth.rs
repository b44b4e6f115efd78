use reqwest::Method;
use serde_json::{json, Value};

use crate::both_dbs;

both_dbs!(signup_creates_account, |app| {
    let body = app.signup("Alice@Example.com").await;
    assert_eq!(body["data"]["message"], "Account created");
    let user = &body["data"]["user"];
    assert!(user["id"].as_i64().unwrap() >= 1);
    assert_eq!(
        user["email"], "alice@example.com",
        "emails are stored lower-cased"
    );
    assert_eq!(user["isAdmin"], false);
    assert!(user["createdAt"].as_str().unwrap().contains('T'));
    assert!(user.get("password").is_none() && user.get("passwordHash").is_none());
});

both_dbs!(signup_rejects_duplicate_email_case_insensitively, |app| {
    app.signup("bob@example.com").await;
    let res = app
        .post(
            "/api/v1/signup",
            None,
            json!({"email": "BOB@example.com", "password": PASSWORD}),
        )
        .await;
    assert_error(
        res,
        409,
        "CONFLICT",
        Some("an account with this email already exists"),
    )
    .await;
});

both_dbs!(signup_validates_input, |app| {
    let cases = [
        (
            json!({"email": "not-an-email", "password": PASSWORD}),
            "email is not a valid address",
        ),
        (
            json!({"email": "a@b", "password": PASSWORD}),
            "email is not a valid address",
        ),
        (
            json!({"email": "carol@example.com", "password": "short"}),
            "password must be at least 10 characters",
        ),
    ];
    for (body, details) in cases {
        let res = app.post("/api/v1/signup", None, body).await;
        let err = assert_error(res, 400, "INVALID_REQUEST", Some("Invalid request format")).await;
        assert_eq!(err["details"], details);
    }
    // Missing field, wrong type, malformed JSON.
    let res = app
        .post(
            "/api/v1/signup",
            None,
            json!({"email": "carol@example.com"}),
        )
        .await;
    let err = assert_error(res, 400, "INVALID_REQUEST", None).await;
    assert!(err["details"]
        .as_str()
        .unwrap()
        .contains("missing field `password`"));
    let res = app
        .post(
            "/api/v1/signup",
            None,
            json!({"email": 5, "password": PASSWORD}),
        )
        .await;
    assert_error(res, 400, "INVALID_REQUEST", None).await;
    let res = app
        .http
        .post(app.url("/api/v1/signup"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "INVALID_REQUEST", None).await;
    let res = app
        .http
        .post(app.url("/api/v1/signup"))
        .header("content-type", "text/plain")
        .body("email=a")
        .send()
        .await
        .unwrap();
    assert_error(
        res,
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        Some("Content-Type must be application/json"),
    )
    .await;
});

both_dbs!(
    login_returns_tokens_and_same_401_for_unknown_email_or_wrong_password,
    |app| {
        let signed_up = app.signup("dave@example.com").await;
        let res = app
            .post(
                "/api/v1/login",
                None,
                json!({"email": "DAVE@example.com", "password": PASSWORD}),
            )
            .await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["data"]["message"], "Login successful");
        assert_eq!(body["data"]["id"], signed_up["data"]["user"]["id"]);
        assert_eq!(
            body["data"]["access_token"]
                .as_str()
                .unwrap()
                .split('.')
                .count(),
            3
        );
        assert_eq!(
            body["data"]["refresh_token"]
                .as_str()
                .unwrap()
                .split('.')
                .count(),
            3
        );

        let wrong = app
            .post(
                "/api/v1/login",
                None,
                json!({"email": "dave@example.com", "password": "wrong password!"}),
            )
            .await;
        let wrong = assert_error(
            wrong,
            401,
            "UNAUTHORIZED",
            Some("Invalid email or password"),
        )
        .await;
        let unknown = app
            .post(
                "/api/v1/login",
                None,
                json!({"email": "nobody@example.com", "password": PASSWORD}),
            )
            .await;
        let unknown = assert_error(
            unknown,
            401,
            "UNAUTHORIZED",
            Some("Invalid email or password"),
        )
        .await;
        assert_eq!(
            wrong, unknown,
            "unknown email and wrong password are indistinguishable"
        );

        let res = app
            .post("/api/v1/login", None, json!({"email": "dave@example.com"}))
            .await;
        assert_error(res, 400, "INVALID_REQUEST", None).await;
    }
);

both_dbs!(refresh_rotates_and_reuse_revokes_the_session, |app| {
    let (_, refresh1, _) = app.user("erin@example.com").await;
    let res = app
        .post(
            "/api/v1/token/refresh",
            None,
            json!({"refresh_token": refresh1}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let access2 = body["data"]["access_token"].as_str().unwrap().to_owned();
    let refresh2 = body["data"]["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh1, refresh2);
    // The new access token works.
    let res = app.get("/api/v1/clients", Some(&access2)).await;
    assert_eq!(res.status(), 200);

    // The old refresh token is spent...
    let res = app
        .post(
            "/api/v1/token/refresh",
            None,
            json!({"refresh_token": refresh1}),
        )
        .await;
    let err = assert_error(res, 401, "UNAUTHORIZED", Some("invalid session token")).await;
    assert_eq!(
        err["details"],
        "refresh token already used; session revoked"
    );
    // ...and presenting it revoked the whole session, including the newer token.
    let res = app
        .post(
            "/api/v1/token/refresh",
            None,
            json!({"refresh_token": refresh2}),
        )
        .await;
    let err = assert_error(res, 401, "UNAUTHORIZED", Some("invalid session token")).await;
    assert_eq!(err["details"], "refresh token revoked");

    // A fresh login is a new session and works.
    let (_, refresh3, _) = {
        let body: Value = app
            .post(
                "/api/v1/login",
                None,
                json!({"email": "erin@example.com", "password": PASSWORD}),
            )
            .await
            .json()
            .await
            .unwrap();
        (
            (),
            body["data"]["refresh_token"].as_str().unwrap().to_owned(),
            (),
        )
    };
    let res = app
        .post(
            "/api/v1/token/refresh",
            None,
            json!({"refresh_token": refresh3}),
        )
        .await;
    assert_eq!(res.status(), 200);
});

both_dbs!(
    refresh_rejects_garbage_access_tokens_and_malformed_bodies,
    |app| {
        let (access, _, _) = app.user("frank@example.com").await;
        for token in ["garbage", access.as_str()] {
            let res = app
                .post(
                    "/api/v1/token/refresh",
                    None,
                    json!({"refresh_token": token}),
                )
                .await;
            assert_error(res, 401, "UNAUTHORIZED", Some("invalid session token")).await;
        }
        let res = app
            .post("/api/v1/token/refresh", None, json!({"token": "x"}))
            .await;
        assert_error(res, 400, "INVALID_REQUEST", None).await;
    }
);

both_dbs!(access_token_checks_on_user_endpoints, |app| {
    let (_, refresh, _) = app.user("gina@example.com").await;
    let res = app.get("/api/v1/clients", None).await;
    assert_error(
        res,
        401,
        "UNAUTHORIZED",
        Some("missing Authorization header"),
    )
    .await;
    let res = app.get("/api/v1/clients", Some("not-a-jwt")).await;
    assert_error(
        res,
        401,
        "UNAUTHORIZED",
        Some("invalid or expired access token"),
    )
    .await;
    // A refresh token is not an access token.
    let res = app.get("/api/v1/clients", Some(&refresh)).await;
    assert_error(
        res,
        401,
        "UNAUTHORIZED",
        Some("invalid or expired access token"),
    )
    .await;
    // The admin token is not a user token.
    let res = app.get("/api/v1/clients", Some(ADMIN_TOKEN)).await;
    assert_error(res, 401, "UNAUTHORIZED", None).await;
    let res = app
        .http
        .request(Method::GET, app.url("/api/v1/clients"))
        .header("Authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_error(
        res,
        401,
        "UNAUTHORIZED",
        Some("expected `Authorization: Bearer <token>`"),
    )
    .await;
});
