//! Webhooks from a fleet: two instances of the real binary on one PostgreSQL database, 1000
//! settlements (batched), one instance killed with SIGKILL midway. Every event in the outbox
//! reaches the receiver; the survivor takes over what the dead one had claimed once its lease
//! runs out; duplicates are counted by event id at the receiver.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use devnet::{Devnet, DevnetOptions};
use sea_orm::{ColumnTrait, Database, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::json;

use crate::fleet::{
    all_rows, instance_with, merchant, payments, settle_all, wait_for_split, LEASE_TTL_SECS,
};
use crate::helpers::*;
use crate::process::post_json;
use crate::webhook_helpers::*;

/// Deliveries a worker has in flight at most (`webhooks.concurrency`).
const CONCURRENCY: usize = 16;

async fn events(db: &DatabaseConnection) -> Vec<entities::webhook_event::Model> {
    entities::webhook_event::Entity::find()
        .all(db)
        .await
        .unwrap()
}

#[actix_web::test]
async fn two_instances_deliver_every_event_through_a_kill() {
    let devnet = Devnet::start(DevnetOptions {
        block_time: Some(1),
        gas_limit: Some(300_000_000),
        payers: 8,
        multicall3: true,
        ..DevnetOptions::default()
    })
    .await
    .unwrap();
    let db = TestDb::create(Db::Postgres).await;
    let conn = Database::connect(&db.url).await.unwrap();
    let concurrency = CONCURRENCY.to_string();
    let env = [
        ("APP__WEBHOOKS__ALLOW_HOSTS", "127.0.0.1"),
        ("APP__WEBHOOKS__POLL_INTERVAL_MS", "50"),
        ("APP__WEBHOOKS__TIMEOUT_SECS", "2"),
        ("APP__WEBHOOKS__LEASE_SECS", "4"),
        ("APP__WEBHOOKS__BACKOFF_BASE_MS", "200"),
        ("APP__WEBHOOKS__BACKOFF_MAX_SECS", "2"),
        ("APP__WEBHOOKS__CONCURRENCY", concurrency.as_str()),
        ("APP__SETTLEMENT__BATCH_MAX", "50"),
        // B's settles queued to A's signers when A dies wait out A's lease (6 s) and are sent
        // by B once it takes the signers over, instead of failing after the default 5 s.
        ("APP__FLEET__LEASE_TTL_SECS", "6"),
        ("APP__FLEET__QUEUE_PICKUP_SECS", "20"),
        // 1000 connections open at once on a 2-core machine that also runs the rest of the
        // suite: a worker may read a request's headers more than the default 5 s after its
        // connection and 408 it unread, and anvil may answer a call after the default 5 s
        // bound (both honest answers, nothing charged, but not what this test is about: the
        // bounds have their own tests).
        ("APP__SERVER__HEADER_TIMEOUT_SECS", "60"),
        ("APP__RPC__TIMEOUT_MS", "20000"),
    ];
    let a = instance_with(&db.url, &devnet, &env);
    let b = instance_with(&db.url, &devnet, &env);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(600)
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let key = merchant(&http, &a.url).await;
    let login = post_json(
        &http,
        &format!("{}/api/v1/login", a.url),
        None,
        &json!({ "email": "fleet@example.com", "password": PASSWORD }),
    )
    .await;
    let access = login["data"]["access_token"].as_str().unwrap().to_owned();
    let receiver = Receiver::start("127.0.0.1", vec![]);
    let made = post_json(
        &http,
        &format!("{}/api/v1/webhooks", b.url),
        Some(&access),
        &json!({
            "url": format!("http://127.0.0.1:{}/hook", receiver.port),
            "events": ["settlement.mined", "settlement.confirmed"],
        }),
    )
    .await;
    receiver.set_secret(made["data"]["secret"].as_str().unwrap());
    // Both instances hold their share of the four signers before the load starts, so that each
    // sends its own settles: what B answers must not hang on a lease A held when it died.
    wait_for_split(&conn, &[2, 2], Duration::from_secs(LEASE_TTL_SECS * 4)).await;

    // 1000 settles, half to each instance; A is killed once the receiver has heard 300 events.
    let started = Instant::now();
    let bodies = payments(&devnet, 1000, 1_000);
    let (to_a, to_b) = bodies.split_at(500);
    let a_url = a.url.clone();
    let killer = async {
        receiver
            .until("300 deliveries", 120, |h| h.len() >= 300)
            .await;
        a.kill();
    };
    let (_, answers_b, ()) = futures::join!(
        settle_all(&http, &a_url, &key, to_a),
        settle_all(&http, &b.url, &key, to_b),
        killer
    );
    let b_failed: Vec<_> = answers_b
        .iter()
        .filter(|a| !matches!(a, Ok(v) if v["success"] == true))
        .collect();
    assert!(
        b_failed.is_empty(),
        "the survivor settled all of its own: {} did not, e.g. {:?}",
        b_failed.len(),
        &b_failed[..b_failed.len().min(3)]
    );

    // Every ledger row resolves (the survivor adopts the dead one's), and every event in the
    // outbox reaches the receiver, signed.
    let deadline = Instant::now() + Duration::from_secs(180);
    let (outbox, hits) = loop {
        let open = all_rows(&conn)
            .await
            .iter()
            .filter(|r| r.status == "pending" || r.status == "submitted")
            .count();
        let outbox = events(&conn).await;
        let hits = receiver.hits();
        let heard: std::collections::HashSet<&str> =
            hits.iter().map(|h| h.event_id.as_str()).collect();
        if open == 0 && outbox.iter().all(|e| heard.contains(e.event_id.as_str())) {
            break (outbox, hits);
        }
        assert!(
            Instant::now() < deadline,
            "{open} rows open, {} of {} events heard",
            heard.len(),
            outbox.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // No event lost, none invented: each confirmed settlement has exactly one `mined` and one
    // `confirmed` event (confirmations = 1: both in the transaction that recorded the
    // receipt), and no other settlement has any.
    let confirmed: Vec<i64> = entities::settlement::Entity::find()
        .filter(entities::settlement::Column::Status.eq("confirmed"))
        .all(&conn)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(confirmed.len() >= 500, "{} confirmed", confirmed.len());
    let mut per_row: HashMap<i64, Vec<String>> = HashMap::new();
    for e in &outbox {
        per_row
            .entry(e.settlement_id.unwrap())
            .or_default()
            .push(e.event_type.clone());
    }
    assert_eq!(per_row.len(), confirmed.len());
    for id in &confirmed {
        let mut kinds = per_row[id].clone();
        kinds.sort();
        assert_eq!(
            kinds,
            ["settlement.confirmed", "settlement.mined"],
            "row {id}"
        );
    }
    assert!(hits.iter().all(|h| h.signed), "every request is signed");

    // Duplicates: only deliveries the killed instance had in flight at the kill can come twice
    // (it died between the receiver's answer and its own record of it).
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for h in &hits {
        *seen.entry(h.event_id.as_str()).or_default() += 1;
    }
    let twice: Vec<(&&str, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "webhooks fleet: {} settlements confirmed, {} events, {} requests, {} event ids \
         heard more than once, {:?}",
        confirmed.len(),
        outbox.len(),
        hits.len(),
        twice.len(),
        started.elapsed()
    );
    assert!(
        twice.len() <= CONCURRENCY && twice.iter().all(|(_, n)| **n == 2),
        "duplicates beyond the killed instance's requests in flight: {twice:?}"
    );
    let delivered = entities::webhook_delivery::Entity::find()
        .filter(entities::webhook_delivery::Column::Status.eq("delivered"))
        .all(&conn)
        .await
        .unwrap()
        .len();
    assert_eq!(delivered, outbox.len(), "one delivered row per event");
    receiver.stop().await;
    drop(b);
}
