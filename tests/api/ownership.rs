//! Ownership before effects: an operation on a key, a resource or a settlement the caller does
//! not own changes nothing (the database, the key cache) and answers exactly as for an id that
//! does not exist.

use reqwest::{Method, Response};
use sea_orm::{
    ColumnTrait, ConnectionTrait, Database, DatabaseConnection, EntityTrait, QueryFilter,
};
use serde_json::{json, Value};

use crate::both_dbs;
use crate::chain_helpers::*;
use crate::helpers::*;
use crate::resources::resource_body;

/// A 404's status and body.
async fn not_found(res: Response) -> Value {
    assert_error(res, 404, "NOT_FOUND", None).await
}

/// `method path` as the user with access token `bearer`.
async fn call(
    app: &TestApp,
    method: Method,
    path: String,
    bearer: &str,
    body: Option<Value>,
) -> Response {
    app.request(method, &path, Some(bearer), body).await
}

async fn client_row(db: &DatabaseConnection, id: &str) -> entities::client::Model {
    entities::client::Entity::find()
        .filter(entities::client::Column::ClientId.eq(id))
        .one(db)
        .await
        .unwrap()
        .expect("key row")
}

both_dbs!(someone_elses_key_is_not_found_and_nothing_changes, |app| {
    let (alice, _, _) = app.user("alice-owns@example.com").await;
    let (bob, _, _) = app.user("bob-tries@example.com").await;
    let (id, token) = app.client_key(&alice, "verify,settle").await;
    assert_eq!(
        app.get_as_client("/api/v1/supported", &id, &token)
            .await
            .status(),
        200
    );

    // Pause the key behind the server's back: while its cache entry lives, the key still
    // works; the moment anything evicts it, the next use reads the row and is refused. So "still
    // accepted" below means "not evicted, not re-read".
    let db = Database::connect(&app.db.url).await.unwrap();
    let paused_at = match db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => "now()".to_owned(),
        _ => format!("'{}'", chrono::Utc::now().to_rfc3339()),
    };
    db.execute_unprepared(&format!(
        "UPDATE clients SET paused_at = {paused_at} WHERE client_id = '{id}'"
    ))
    .await
    .unwrap();
    let before = client_row(&db, &id).await;

    let unknown = "cl_000000000000000000000000";
    let delete = |key: &str| {
        call(
            &app,
            Method::DELETE,
            format!("/api/v1/clients/{key}"),
            &bob,
            None,
        )
    };
    let expected = not_found(delete(unknown).await).await;
    assert_eq!(not_found(delete(&id).await).await, expected);
    for change in [
        json!({ "status": "paused" }),
        json!({ "status": "active" }),
        json!({ "rotate": true }),
        json!({ "title": "mine now", "scope": "verify" }),
    ] {
        let patch = |key: &str| {
            let path = format!("/api/v1/clients/{key}");
            call(&app, Method::PATCH, path, &bob, Some(change.clone()))
        };
        let expected = not_found(patch(unknown).await).await;
        assert_eq!(not_found(patch(&id).await).await, expected, "{change}");
    }

    // Nothing changed: the row, and the cached entry (still accepted).
    assert_eq!(client_row(&db, &id).await, before);
    assert_eq!(
        app.get_as_client("/api/v1/supported", &id, &token)
            .await
            .status(),
        200
    );

    // The owner's own change does take effect (and evicts): resumed, the key works on.
    let res = app
        .request(
            Method::PATCH,
            &format!("/api/v1/clients/{id}"),
            Some(&alice),
            Some(json!({ "status": "active" })),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(client_row(&db, &id).await.paused_at, None);
    // An admin user may revoke anyone's key.
    let res = app
        .post(
            "/admin/users",
            Some(ADMIN_TOKEN),
            json!({ "email": "root-owns@example.com", "password": PASSWORD, "is_admin": true }),
        )
        .await;
    assert_eq!(res.status(), 201);
    let root = app.login("root-owns@example.com").await;
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/v1/clients/{id}"),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app.get_as_client("/api/v1/supported", &id, &token).await;
    assert_error(res, 401, "UNAUTHORIZED", None).await;
    db.close().await.ok();
});

both_dbs!(someone_elses_resource_is_not_found_and_unchanged, |app| {
    let (alice, _, _) = app.user("alice-res@example.com").await;
    let (bob, _, _) = app.user("bob-res@example.com").await;
    let body = |path: &str| resource_body(path, "1000");
    let res = app
        .post("/api/v1/resources", Some(&alice), body("/alice"))
        .await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let id = created["data"]["id"].as_i64().expect("resource id");
    let own = || async {
        app.get("/api/v1/users/resources", Some(&alice))
            .await
            .json::<Value>()
            .await
            .unwrap()
    };
    let before = own().await;

    let put = |rid: i64| {
        let path = format!("/api/v1/resources/{rid}");
        call(&app, Method::PUT, path, &bob, Some(body("/bob")))
    };
    let expected = not_found(put(id + 1_000_000).await).await;
    assert_eq!(not_found(put(id).await).await, expected);
    assert_eq!(own().await, before);
});

async fn someone_elses_settlement_is_not_found(kind: Db) {
    // Batched, so that one transaction carries two keys' settlements.
    let devnet = devnet::Devnet::start(devnet::DevnetOptions {
        gas_limit: Some(300_000_000),
        multicall3: true,
        ..devnet::DevnetOptions::default()
    })
    .await
    .expect("devnet");
    let app = ChainApp::start_app_full(
        TestDb::create(kind).await,
        &devnet,
        devnet.facilitator_keys[..1].to_vec(),
        json!({}),
        json!({ "settlement": { "batch_max": 10, "batch_window_ms": 500 } }),
    )
    .await;
    let alice = ChainApp::with_merchant(app, devnet).await;
    let (bob_access, _, _) = alice.app.user("bob-settles@example.com").await;
    let (bob_id, bob_token) = alice.app.client_key(&bob_access, "verify,settle").await;

    let payment = |payer: usize, value: u64| {
        let p = Payment::new(&alice, payer, value);
        (p.nonce, p.v1(&p.sign(alice.payer(payer)), value))
    };
    // Both keys' first use (the secret's hash) before the settles, so that they arrive together.
    for (id, token) in [
        (&alice.client_id, &alice.client_token),
        (&bob_id, &bob_token),
    ] {
        let unknown = format!("/api/v1/settlements/0x{}", "cd".repeat(32));
        let res = alice.app.get_as_client(&unknown, id, token).await;
        assert_eq!(res.status(), 404);
    }
    // A batch's window closes early when no other settle is on its way, so on a loaded machine
    // the two settles can go out one by one: each attempt pays with fresh authorizations until
    // one transaction carries both (each attempt's payments must succeed either way).
    let mut attempts = 0;
    let (tx, alice_nonce, bob_nonce) = loop {
        attempts += 1;
        let (alice_nonce, alice_pay) = payment(0, 1_100);
        let (bob_nonce, bob_pay) = payment(1, 2_200);
        let (a, b) = futures::join!(
            alice.post_x402("/api/v1/settle", &alice_pay),
            alice
                .app
                .post_as_client("/api/v1/settle", &bob_id, &bob_token, &bob_pay),
        );
        let a: Value = a.json().await.unwrap();
        let b: Value = b.json().await.unwrap();
        assert_eq!((&a["success"], &b["success"]), (&json!(true), &json!(true)));
        let tx = a["transaction"].as_str().unwrap().to_owned();
        if b["transaction"] == tx {
            break (tx, alice_nonce, bob_nonce);
        }
        assert!(
            attempts < 8,
            "no attempt put both keys' settles in one batch"
        );
    };

    let get_as = |id: &str, token: &str, path: String| {
        let app = &alice.app;
        let (id, token) = (id.to_owned(), token.to_owned());
        async move { app.get_as_client(&path, &id, &token).await }
    };
    // Each key sees its own settlement in the shared transaction, never the other's.
    let mine: Value = get_as(
        &alice.client_id,
        &alice.client_token,
        format!("/api/v1/settlements/{tx}"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(mine["data"]["amount"], "1100");
    let theirs: Value = get_as(&bob_id, &bob_token, format!("/api/v1/settlements/{tx}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["data"]["amount"], "2200");

    // A transaction with none of the key's settlements: as unknown as a hash never seen.
    let (carol_access, _, _) = alice.app.user("carol-looks@example.com").await;
    let (carol_id, carol_token) = alice.app.client_key(&carol_access, "verify").await;
    let unknown = format!("0x{}", "ab".repeat(32));
    let expected = not_found(
        get_as(
            &carol_id,
            &carol_token,
            format!("/api/v1/settlements/{unknown}"),
        )
        .await,
    )
    .await;
    let res = get_as(&carol_id, &carol_token, format!("/api/v1/settlements/{tx}")).await;
    assert_eq!(not_found(res).await, expected);

    // By authorization: bob's authorization, asked with alice's key, is not found either.
    let by_auth = |payer: usize, nonce: alloy::primitives::B256| {
        format!(
            "/api/v1/settlements?network=base-sepolia&payer={}&nonce={nonce}",
            alice.payer(payer).address()
        )
    };
    let expected = not_found(
        get_as(
            &alice.client_id,
            &alice.client_token,
            by_auth(1, alloy::primitives::B256::repeat_byte(7)),
        )
        .await,
    )
    .await;
    let res = get_as(&alice.client_id, &alice.client_token, by_auth(1, bob_nonce)).await;
    assert_eq!(not_found(res).await, expected);
    let res = get_as(
        &alice.client_id,
        &alice.client_token,
        by_auth(0, alice_nonce),
    )
    .await;
    assert_eq!(res.status(), 200);
}

#[actix_web::test]
async fn someone_elses_settlement_is_not_found_sqlite() {
    someone_elses_settlement_is_not_found(Db::Sqlite).await
}

#[actix_web::test]
async fn someone_elses_settlement_is_not_found_postgres() {
    someone_elses_settlement_is_not_found(Db::Postgres).await
}
