//! The managed claimer of payment channels across a fleet: two real facilitator processes on
//! one PostgreSQL database, with the same single signer key, channels on, the same delegated
//! `receiverAuthorizer` key and a claimer passing every second. One instance holds the signer's
//! lease and is the network's claimer; the other passes over it.
//!
//! A payer whose vouchers were accepted at `/verify` by both instances in turn withdraws: the
//! highest voucher is claimed on chain before the withdrawal's deadline (chain time), by one
//! transaction, sent by the lease holder. Then the holder is killed (SIGKILL) and a second
//! payer, whose last vouchers only the survivor accepted, withdraws at once: the survivor takes
//! the lease over after its TTL and claims that channel before its deadline, again by one
//! transaction. The claimer role moves with the lease and no claim is lost when the claimer
//! dies. The contract's least `withdrawDelay` is 900 s: claims are judged against chain time.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;
use devnet::batch_settlement::{Channel, BATCH_SETTLEMENT};
use devnet::Devnet;
use sea_orm::{Database, DatabaseConnection, EntityTrait};
use serde_json::Value;

use crate::chain_helpers::PAY_TO;
use crate::channel_claimer::{claimed_before, withdraw};
use crate::channels::{deposit_body, options, voucher_body};
use crate::fleet::{all_rows, instance_with, merchant, post_as, wait_for_split, LEASE_TTL_SECS};
use crate::helpers::*;
use crate::process::get_json;

/// How long a claim may take: the lease's TTL, a lease-keeping round and a claimer pass after
/// the kill, with room for a loaded machine.
const CLAIM_WITHIN: Duration = Duration::from_secs(LEASE_TTL_SECS * 10);

/// Whether the instance at `base` says it holds the signer's lease (`/api/v1/status`).
async fn holds_lease(http: &reqwest::Client, base: &str) -> bool {
    let status = get_json(http, &format!("{base}/api/v1/status"), None).await;
    status["data"]["networks"]
        .as_array()
        .expect("networks")
        .iter()
        .filter_map(|n| n["signers"].as_array())
        .flatten()
        .any(|s| s["leased"] == true)
}

/// The one live lease's holder (instance id) in the database, once exactly one instance holds
/// it and only the instance at `bases[i]` says so: (holder, i).
async fn lease_holder(
    conn: &DatabaseConnection,
    http: &reqwest::Client,
    bases: &[&str],
    within: Duration,
) -> (String, usize) {
    let deadline = Instant::now() + within;
    loop {
        let split: HashMap<String, HashSet<String>> = wait_for_split(
            conn,
            &[1],
            deadline.saturating_duration_since(Instant::now()),
        )
        .await;
        let holder = split.into_keys().next().expect("one holder");
        let mut saying = Vec::new();
        for (i, base) in bases.iter().enumerate() {
            if holds_lease(http, base).await {
                saying.push(i);
            }
        }
        if let [i] = saying[..] {
            return (holder, i);
        }
        assert!(
            Instant::now() < deadline,
            "no single instance says it holds the lease: {saying:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ledger row of the transaction the signer sent with `nonce`, once confirmed (the chain
/// may show the claim a moment before its sender has seen the receipt): (instance, tx).
async fn sent_with(conn: &DatabaseConnection, nonce: u64) -> (String, B256) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows: Vec<_> = all_rows(conn)
            .await
            .into_iter()
            .filter(|r| r.signer_nonce == Some(nonce as i64))
            .collect();
        assert_eq!(rows.len(), 1, "one row sent with nonce {nonce}");
        let row = &rows[0];
        if row.status == "confirmed" {
            return (
                row.instance_id.clone().expect("an instance"),
                row.tx_hash.as_deref().unwrap().parse().unwrap(),
            );
        }
        assert!(
            row.status == "pending" || row.status == "submitted",
            "row {}: {}",
            row.id,
            row.status
        );
        assert!(Instant::now() < deadline, "row {} never confirmed", row.id);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The claim sent with `nonce` went to the channel contract, from the instance `by`.
async fn claim_sent_by(conn: &DatabaseConnection, devnet: &Devnet, nonce: u64, by: &str) {
    let (instance, tx) = sent_with(conn, nonce).await;
    assert_eq!(instance, by, "the claim was sent by the lease holder");
    let receipt = devnet.receipt(tx).await.unwrap().expect("mined");
    assert!(receipt.status());
    assert_eq!(receipt.to, Some(BATCH_SETTLEMENT));
}

async fn verify_at(
    http: &reqwest::Client,
    base: &str,
    key: &(String, String),
    devnet: &Devnet,
    ch: &Channel,
    max: u128,
) {
    let answer: Value = post_as(http, base, "verify", key, &voucher_body(devnet, ch, max))
        .await
        .unwrap();
    assert_eq!(answer["isValid"], true, "{max} at {base}: {answer}");
}

#[actix_web::test]
async fn the_claimer_moves_with_the_signer_lease_and_no_claim_is_lost() {
    let devnet = Devnet::start(options()).await.unwrap();
    let db = TestDb::create(Db::Postgres).await;
    let conn = Database::connect(&db.url).await.unwrap();
    let authorizer = PrivateKeySigner::random();
    let signer_key = format!(
        "0x{}",
        alloy::hex::encode(devnet.facilitator_keys[0].to_bytes())
    );
    let authorizer_key = format!("0x{}", alloy::hex::encode(authorizer.to_bytes()));
    let env = [
        // One signer key for both: one lease, one claimer.
        ("SIGNER_KEYS_BASE_SEPOLIA", signer_key.as_str()),
        ("APP__SETTLEMENT__CHANNELS", "true"),
        (
            "APP__SETTLEMENT__CHANNELS_AUTHORIZER_KEY_ENV",
            "X402_TEST_CHANNELS_AUTHORIZER",
        ),
        ("X402_TEST_CHANNELS_AUTHORIZER", authorizer_key.as_str()),
        ("APP__SETTLEMENT__CHANNELS_CLAIM_INTERVAL_SECS", "1"),
        // Generous bounds under CI load.
        ("APP__SERVER__HEADER_TIMEOUT_SECS", "60"),
        ("APP__RPC__TIMEOUT_MS", "20000"),
    ];
    let a = instance_with(&db.url, &devnet, &env);
    let b = instance_with(&db.url, &devnet, &env);
    let http = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let key = merchant(&http, &a.url).await;
    let (holder, i) = lease_holder(
        &conn,
        &http,
        &[&a.url, &b.url],
        Duration::from_secs(LEASE_TTL_SECS * 4),
    )
    .await;
    let (held, other) = if i == 0 { (a, b) } else { (b, a) };

    // Two channels delegated to our authorizer, opened through one instance each; vouchers
    // accepted by the two in turn.
    let first = Channel::delegated(
        &devnet,
        devnet.payers[0].clone(),
        PAY_TO,
        authorizer.clone(),
    );
    let second = Channel::delegated(&devnet, devnet.payers[1].clone(), PAY_TO, authorizer);
    for (ch, base) in [(&first, &held.url), (&second, &other.url)] {
        let opened = post_as(
            &http,
            base,
            "settle",
            &key,
            &deposit_body(&devnet, ch, 1_000_000, 100),
        )
        .await
        .unwrap();
        assert_eq!(opened["success"], true, "{opened}");
    }
    let both = [&held.url, &other.url];
    for (n, max) in [200, 300, 400, 500].into_iter().enumerate() {
        verify_at(&http, both[n % 2], &key, &devnet, &first, max).await;
    }
    for (n, max) in [200, 300].into_iter().enumerate() {
        verify_at(&http, both[n % 2], &key, &devnet, &second, max).await;
    }
    let signer = devnet.facilitator_keys[0].address();
    let before = devnet.nonce_of(signer).await.unwrap();

    // The first payer withdraws: claimed in time, by one transaction of the lease holder.
    let started = Instant::now();
    let deadline = withdraw(&devnet, &first).await;
    claimed_before(&devnet, &first, 500, deadline, CLAIM_WITHIN).await;
    let first_claim = started.elapsed();
    assert_eq!(devnet.nonce_of(signer).await.unwrap(), before + 1);
    claim_sent_by(&conn, &devnet, before, &holder).await;

    // The claimer dies; the second payer's last vouchers are accepted by the survivor alone,
    // and the payer withdraws at once.
    held.kill();
    let killed = Instant::now();
    for max in [400, 500] {
        verify_at(&http, &other.url, &key, &devnet, &second, max).await;
    }
    let deadline = withdraw(&devnet, &second).await;
    let withdrawn = killed.elapsed();
    // (Whether the dead instance still held the lease then: the claim had to wait for it.)
    let lease = entities::signer_lease::Entity::find()
        .one(&conn)
        .await
        .unwrap()
        .expect("the signer's lease");
    let gap = lease.holder == holder;
    claimed_before(&devnet, &second, 500, deadline, CLAIM_WITHIN).await;
    let second_claim = killed.elapsed();

    // The survivor holds the lease now, and sent that claim: one transaction.
    let (survivor, i) = lease_holder(
        &conn,
        &http,
        &[&other.url],
        Duration::from_secs(LEASE_TTL_SECS * 2),
    )
    .await;
    assert_eq!(i, 0);
    assert_ne!(survivor, holder);
    assert_eq!(devnet.nonce_of(signer).await.unwrap(), before + 2);
    claim_sent_by(&conn, &devnet, before + 1, &survivor).await;
    for ch in [&first, &second] {
        let state = devnet.channel_state(ch.id).await.unwrap();
        assert_eq!((state.balance, state.total_claimed), (1_000_000, 500));
    }
    eprintln!(
        "channel claimer fleet: first claim {first_claim:?} after the withdrawal; holder \
         killed, second withdrawal {withdrawn:?} later (its lease still the dead holder's: \
         {gap}), claimed by the survivor {second_claim:?} after the kill (lease TTL \
         {LEASE_TTL_SECS} s)"
    );
    drop(other);
    conn.close().await.ok();
}
