//! Payment channels across a fleet: two real facilitator processes on one PostgreSQL database
//! verify vouchers of the same channels alternately, each voucher also replayed at the other
//! instance at once and a stale one sent after it; one instance is killed with SIGKILL while
//! it has verifies in flight, then started again. No voucher is accepted twice (of the two
//! copies at most one gets `isValid: true`, and exactly one when both answer), none is lost
//! (the database's accepted voucher of each channel is the highest any instance accepted, and
//! nothing below it passes afterwards), and after one claim of every channel and the sweep the
//! chain agrees to the unit: each channel's `totalClaimed` is its highest accepted voucher, and
//! the receiver got exactly their sum.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use devnet::batch_settlement::Channel;
use devnet::Devnet;
use sea_orm::{Database, DatabaseConnection, EntityTrait};
use serde_json::{json, Value};

use crate::chain_helpers::*;
use crate::channel_settle::sweep_body;
use crate::channels::{config, deposit_body, options, requirements, voucher_body};
use crate::fleet::{
    instance_with, merchant, post_as, spawn_instance_with, wait_for_split, LEASE_TTL_SECS,
};
use crate::helpers::*;

/// Vouchers per channel before the kill is over (more follow until the restarted instance has
/// taken part).
const STEPS: u128 = 120;
/// Steps per channel that involve the restarted instance, at least.
const AFTER_RESTART: usize = 20;
/// The deposit's voucher; each voucher adds `STEP` to the cumulative amount.
const OPENING: u128 = 10;
const STEP: u128 = 10;
const DEPOSIT: u128 = 10_000_000;
const BELOW: &str = "invalid_batch_settlement_evm_cumulative_below_claimed";

/// One `/verify` answer: the cumulative amount sent, where, and what came back (`Err`: no
/// answer).
struct Sent {
    max: u128,
    stale: bool,
    answer: Result<Value, String>,
    /// Sent to A before the kill and not answered before it.
    cut: bool,
}

impl Sent {
    fn accepted(&self) -> bool {
        matches!(&self.answer, Ok(v) if v["isValid"] == true)
    }
}

async fn verify(
    http: &reqwest::Client,
    base: &str,
    key: &(String, String),
    body: &Value,
) -> Result<Value, String> {
    post_as(http, base, "verify", key, body).await
}

/// The instances as the load sees them: A (none while it is dead), B, and how many verifies A
/// has in flight.
struct Fleet {
    a: RefCell<Option<String>>,
    b: String,
    a_in_flight: Cell<usize>,
    killed: Cell<bool>,
    restarted: RefCell<Option<String>>,
    steps: Cell<usize>,
}

impl Fleet {
    /// Where step `i`'s voucher goes first and where its copy goes: alternately A and B, and
    /// B for both while A is dead.
    fn targets(&self, i: u128) -> (String, String) {
        let a = self.a.borrow().clone().unwrap_or_else(|| self.b.clone());
        if i.is_multiple_of(2) {
            (a, self.b.clone())
        } else {
            (self.b.clone(), a)
        }
    }

    async fn verify(
        &self,
        http: &reqwest::Client,
        key: &(String, String),
        to: &str,
        body: &Value,
    ) -> (Result<Value, String>, bool) {
        let at_a = self.a.borrow().as_deref() == Some(to) && !self.killed.get();
        if at_a {
            self.a_in_flight.set(self.a_in_flight.get() + 1);
        }
        let answer = verify(http, to, key, body).await;
        if at_a {
            self.a_in_flight.set(self.a_in_flight.get() - 1);
        }
        (answer, at_a && self.killed.get())
    }
}

/// One payer's vouchers, in order (a client sends the next once the last is answered): each
/// to one instance and its copy to the other at the same time, then one below it.
async fn pay(
    fleet: &Fleet,
    http: &reqwest::Client,
    key: &(String, String),
    devnet: &Devnet,
    ch: &Channel,
) -> Vec<Sent> {
    let mut sent = Vec::new();
    let mut after_restart = 0;
    let mut i: u128 = 0;
    while i < STEPS || after_restart < AFTER_RESTART {
        assert!(i < 100_000, "the restarted instance never took part");
        let max = OPENING + STEP * (i + 1);
        let body = voucher_body(devnet, ch, max);
        let (first, second) = fleet.targets(i);
        let (one, two) = futures::join!(
            fleet.verify(http, key, &first, &body),
            fleet.verify(http, key, &second, &body)
        );
        // Never sent before, below the voucher just sent: refused, whoever accepted that one.
        let stale = voucher_body(devnet, ch, max - STEP / 2);
        // (To whichever instance is the copy's now: A may have died meanwhile.)
        let (_, other) = fleet.targets(i);
        let three = fleet.verify(http, key, &other, &stale).await;
        let restarted = fleet.restarted.borrow().clone();
        if restarted.is_some_and(|r| r == first || r == second) {
            after_restart += 1;
        }
        for (max, stale, (answer, cut)) in [
            (max, false, one),
            (max, false, two),
            (max - STEP / 2, true, three),
        ] {
            sent.push(Sent {
                max,
                stale,
                answer,
                cut,
            });
        }
        fleet.steps.set(fleet.steps.get() + 1);
        i += 1;
    }
    sent
}

/// The channel's accepted voucher as stored: (ceiling, signature).
async fn stored(conn: &DatabaseConnection, ch: &Channel) -> (u128, String) {
    let row = entities::channel::Entity::find_by_id(format!("{:#x}", ch.id))
        .one(conn)
        .await
        .unwrap()
        .expect("the channel's row");
    (
        row.accepted.parse().unwrap(),
        row.accepted_signature.expect("a signature"),
    )
}

#[actix_web::test]
async fn two_instances_accept_each_voucher_once_through_a_kill() {
    let devnet = Devnet::start(options()).await.unwrap();
    let db = TestDb::create(Db::Postgres).await;
    let conn = Database::connect(&db.url).await.unwrap();
    let env = [
        ("APP__SETTLEMENT__CHANNELS", "true"),
        // Generous bounds under CI load (their own tests check them).
        ("APP__SERVER__HEADER_TIMEOUT_SECS", "60"),
        ("APP__RPC__TIMEOUT_MS", "20000"),
    ];
    let a = instance_with(&db.url, &devnet, &env);
    let b = instance_with(&db.url, &devnet, &env);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let key = merchant(&http, &a.url).await;
    wait_for_split(&conn, &[2, 2], Duration::from_secs(LEASE_TTL_SECS * 4)).await;

    // One channel per payer, one receiverAuthorizer for all (one claim covers them), each
    // opened by a deposit (its voucher: 10), alternately through A and B.
    let authorizer = PrivateKeySigner::random();
    let channels: Vec<Channel> = devnet
        .payers
        .iter()
        .map(|p| Channel::delegated(&devnet, p.clone(), PAY_TO, authorizer.clone()))
        .collect();
    for (n, ch) in channels.iter().enumerate() {
        let base = if n.is_multiple_of(2) { &a.url } else { &b.url };
        let opened = post_as(
            &http,
            base,
            "settle",
            &key,
            &deposit_body(&devnet, ch, DEPOSIT, OPENING),
        )
        .await
        .unwrap();
        assert_eq!(opened["success"], true, "{opened}");
    }

    // The load; A is killed (SIGKILL) half way, with verifies in flight, then started again.
    let fleet = Fleet {
        a: RefCell::new(Some(a.url.clone())),
        b: b.url.clone(),
        a_in_flight: Cell::new(0),
        killed: Cell::new(false),
        restarted: RefCell::new(None),
        steps: Cell::new(0),
    };
    let started = Instant::now();
    let half = channels.len() * STEPS as usize / 2;
    let killer = async {
        let deadline = Instant::now() + Duration::from_secs(300);
        while fleet.steps.get() < half || fleet.a_in_flight.get() == 0 {
            assert!(Instant::now() < deadline, "the load never got half way");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let in_flight = fleet.a_in_flight.get();
        a.kill();
        fleet.killed.set(true);
        *fleet.a.borrow_mut() = None;
        let killed_at = started.elapsed();
        // Start A again; the load goes to B meanwhile.
        let again = spawn_instance_with(&db.url, &devnet, &env)
            .listening()
            .await;
        *fleet.restarted.borrow_mut() = Some(again.url.clone());
        *fleet.a.borrow_mut() = Some(again.url.clone());
        (in_flight, killed_at, again)
    };
    let loads = futures::future::join_all(
        channels
            .iter()
            .map(|ch| pay(&fleet, &http, &key, &devnet, ch)),
    );
    let (per_channel, (in_flight, killed_at, a2)) = futures::join!(loads, killer);
    let load_time = started.elapsed();

    // Per channel: at most one `isValid: true` per amount, and exactly one whenever both
    // copies were answered; every stale voucher refused as a replay; only the killed
    // instance left requests unanswered; the database holds the highest voucher accepted.
    let mut highest = Vec::new();
    let mut unanswered = 0;
    let mut silent = 0;
    let mut total = 0;
    for (ch, sent) in channels.iter().zip(&per_channel) {
        total += sent.len();
        for s in sent {
            if let Err(e) = &s.answer {
                assert!(s.cut, "unanswered, not cut by the kill: {e}");
                unanswered += 1;
            }
        }
        for s in sent.iter().filter(|s| s.stale) {
            if let Ok(v) = &s.answer {
                assert_eq!(v["isValid"], false, "stale {} accepted: {v}", s.max);
                assert_eq!(v["invalidReason"], BELOW, "{v}");
            }
        }
        let fresh: Vec<&Sent> = sent.iter().filter(|s| !s.stale).collect();
        let mut accepted = HashSet::new();
        let mut yes = 0;
        for pair in fresh.chunks(2) {
            let n = pair.iter().filter(|s| s.accepted()).count();
            assert!(n <= 1, "voucher {} accepted twice", pair[0].max);
            if n == 0 {
                // Accepted by the killed instance, unanswered; the copy was a replay.
                silent += 1;
            }
            if pair.iter().all(|s| s.answer.is_ok()) {
                assert_eq!(n, 1, "voucher {} accepted by neither", pair[0].max);
                let refused = pair.iter().find(|s| !s.accepted()).unwrap();
                let v = refused.answer.as_ref().unwrap();
                assert_eq!(v["invalidReason"], BELOW, "{v}");
            }
            for s in pair.iter().filter(|s| s.accepted()) {
                yes += 1;
                accepted.insert(s.max);
            }
        }
        assert_eq!(yes, accepted.len(), "an amount accepted twice");
        let max = *accepted.iter().max().unwrap();
        // The last voucher went to live instances only: it is the highest, and it is kept.
        assert_eq!(max, fresh.last().unwrap().max);
        let (kept, signature) = stored(&conn, ch).await;
        assert_eq!(kept, max, "the accepted voucher was lost");
        assert_eq!(signature, ch.voucher_signature(&devnet, max).to_string());
        highest.push(max);
    }
    eprintln!(
        "channels fleet: {total} verifies over {} channels in {load_time:?}, A killed at \
         {killed_at:?} with {in_flight} in flight ({unanswered} unanswered, {silent} of them \
         accepted by the dead instance and refused as replays by the other), highest \
         vouchers {highest:?}",
        channels.len()
    );

    // After the restart nothing at or below an accepted voucher passes anywhere.
    for (ch, max) in channels.iter().zip(&highest) {
        for base in [&a2.url, &b.url] {
            let v = verify(&http, base, &key, &voucher_body(&devnet, ch, *max))
                .await
                .unwrap();
            assert_eq!(v["invalidReason"], BELOW, "{v}");
        }
    }

    // One claim of every channel at its stored voucher, through the survivor; then the sweep.
    let mut rows = Vec::new();
    let mut claims = Vec::new();
    for (ch, max) in channels.iter().zip(&highest) {
        let (_, signature) = stored(&conn, ch).await;
        let mut row = ch.voucher(&devnet, *max, *max);
        row.signature = signature.parse().unwrap();
        rows.push(row);
        claims.push(json!({
            "voucher": { "channel": config(ch), "maxClaimableAmount": max.to_string() },
            "signature": signature,
            "totalClaimed": max.to_string(),
        }));
    }
    let call = channels[0].claim_call(&devnet, rows);
    let claim = v2_body(
        requirements(&devnet, &channels[0], 100),
        json!({
            "type": "claim",
            "claims": claims,
            "claimAuthorizerSignature": call.authorizerSignature.to_string(),
        }),
    );
    let receiver_before = devnet.usdc_balance(PAY_TO).await.unwrap();
    let claimed = post_as(&http, &b.url, "settle", &key, &claim)
        .await
        .unwrap();
    assert_eq!(claimed["success"], true, "{claimed}");
    for (ch, max) in channels.iter().zip(&highest) {
        let state = devnet.channel_state(ch.id).await.unwrap();
        assert_eq!(
            (state.balance, state.total_claimed),
            (DEPOSIT, *max),
            "channel {}",
            ch.id
        );
    }
    let sum: u128 = highest.iter().sum();
    let swept = post_as(
        &http,
        &b.url,
        "settle",
        &key,
        &sweep_body(&devnet, &channels[0]),
    )
    .await
    .unwrap();
    assert_eq!(swept["success"], true, "{swept}");
    assert_eq!(swept["amount"], sum.to_string(), "{swept}");
    assert_eq!(
        devnet.usdc_balance(PAY_TO).await.unwrap() - receiver_before,
        U256::from(sum),
        "the receiver got exactly the vouchers accepted"
    );
    drop((a2, b));
}
