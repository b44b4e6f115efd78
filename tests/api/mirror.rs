//! The block-synchronised state mirror (`verify.mirror`): its answers equal a simulation's at
//! the same block over randomized interleavings of what others do to the token, our pending
//! settles count against their payer, and a mirrored EOA's verify makes no RPC call while
//! everything it cannot vouch for falls back to the simulation.

use std::time::{Duration, Instant};

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use devnet::{Devnet, DevnetOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::chain_helpers::*;
use crate::helpers::*;
use crate::mirror_helpers::*;
use crate::tcp_proxy::TcpProxy;

#[actix_web::test]
async fn the_mirror_answers_as_a_simulation_at_the_same_block_over_random_interleavings() {
    let seed: u64 = std::env::var("MIRROR_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("mirror correctness seed: {seed} (MIRROR_SEED={seed} to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let payers = 8;
    let devnet = Devnet::start(DevnetOptions {
        payers,
        payer_balance: U256::from(50_000u64),
        ..DevnetOptions::default()
    })
    .await
    .unwrap();
    let deployer = devnet.deployer.address();
    devnet
        .mint(deployer, U256::from(10_000_000u64))
        .await
        .unwrap();
    for p in &devnet.payers {
        devnet
            .set_eth_balance(p.address(), U256::from(10u128.pow(20)))
            .await
            .unwrap();
    }
    let url = devnet.rpc_url.clone();
    let app = mirror_app(devnet, &url, 5000).await;
    app.devnet.set_automine(false).await.unwrap();
    let mut senders = Senders::new(&app.devnet).await;
    let usdc = app.devnet.usdc;
    let elsewhere = Address::repeat_byte(0x42);
    // Nonces of each payer that were used on chain behind our back.
    let mut used: Vec<Vec<B256>> = vec![Vec::new(); payers];
    let (mut paused, mut blacklisted) = (false, vec![false; payers + 1]);

    let (blocks, per_block) = (50, 20);
    let mut checks = 0u64;
    let mut kinds = std::collections::BTreeMap::new();
    let mut serial = 0u64;
    let answered_before = mirror_outcome(&app, "answered").await;
    for _ in 0..blocks {
        let block = wait_mirror_at_head(&app).await;
        for _ in 0..per_block {
            let i = rng.gen_range(0..payers);
            let balance = app.balance(app.payer(i).address()).await.to::<u64>();
            let value = match rng.gen_range(0..10) {
                0..=3 => rng.gen_range(1..=1000),
                4..=6 => (balance + rng.gen_range(0..3)).saturating_sub(1).max(1),
                _ => rng.gen_range(1..=balance.max(1) * 3 / 2 + 1),
            };
            let mut p = Payment::new(&app, i, value);
            // Unique per check: no answer is a cached copy of another block's.
            serial += 1;
            p.valid_before += serial;
            if !used[i].is_empty() && rng.gen_bool(0.25) {
                p.nonce = used[i][rng.gen_range(0..used[i].len())];
            }
            let signature = p.sign(app.payer(i));
            let answer = app.verify(&p.v2(&signature, value)).await;
            let (valid, reason) = simulated(&app, &p, &signature, block).await;
            assert_eq!(
                (
                    answer["isValid"].as_bool().unwrap(),
                    &answer["invalidReason"]
                ),
                (valid, &reason),
                "seed {seed}, block {block}, payer {i}, value {value} (balance {balance}), \
                 paused {paused}, blacklisted {blacklisted:?}: {answer}"
            );
            checks += 1;
            *kinds.entry(reason.to_string()).or_insert(0u64) += 1;
        }
        // What others do before the next block.
        for _ in 0..rng.gen_range(2..7) {
            let i = rng.gen_range(0..payers);
            let who = app.payer(i).address();
            match rng.gen_range(0..100) {
                // Money in (from the deployer), or out (sent by the payer itself).
                n @ 0..=44 => {
                    let (from, to) = if n < 20 {
                        (deployer, who)
                    } else {
                        (who, elsewhere)
                    };
                    let value = U256::from(rng.gen_range(1..30_000u64));
                    let data = IAdmin::transferCall { to, value }.abi_encode();
                    senders.send(from, usdc, data).await;
                }
                // An authorization of the payer's, used by another sender.
                _ => {
                    let mut a = Payment::new(&app, i, rng.gen_range(1..5_000u64));
                    a.to = elsewhere;
                    let data = twa_calldata(&a, &a.sign(app.payer(i)));
                    senders.send(deployer, usdc, data).await;
                    used[i].push(a.nonce);
                }
            }
        }
        // Now and then a blacklisting, of a payer or of the payee, and a pause; each soon
        // undone (the mirror falls back meanwhile, and must notice both ways).
        let k = rng.gen_range(0..=payers);
        let account = if k == payers {
            PAY_TO
        } else {
            app.payer(k).address()
        };
        if blacklisted[k] && rng.gen_bool(0.5) {
            blacklisted[k] = false;
            let data = IAdmin::unBlacklistCall { account }.abi_encode();
            senders.send(deployer, usdc, data).await;
        } else if !blacklisted[k] && rng.gen_bool(if k == payers { 0.03 } else { 0.15 }) {
            blacklisted[k] = true;
            let data = IAdmin::blacklistCall { account }.abi_encode();
            senders.send(deployer, usdc, data).await;
        }
        if paused && rng.gen_bool(0.6) || !paused && rng.gen_bool(0.05) {
            let data = if paused {
                IAdmin::unpauseCall {}.abi_encode()
            } else {
                IAdmin::pauseCall {}.abi_encode()
            };
            paused = !paused;
            senders.send(deployer, usdc, data).await;
        }
        app.devnet.mine().await.unwrap();
    }
    let answered = mirror_outcome(&app, "answered").await - answered_before;
    let text = app.app.get("/metrics", None).await.text().await.unwrap();
    let outcomes: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("x402_verify_mirror_total{"))
        .collect();
    println!("{checks} checks, {answered} answered by the mirror: {outcomes:?}");
    println!("answers: {kinds:?}");
    assert!(checks >= 1000);
    for kind in [
        "\"\"",
        "\"invalid_exact_evm_nonce_already_used\"",
        "\"insufficient_funds\"",
    ] {
        assert!(
            kinds.get(kind).is_some_and(|n| *n >= 20),
            "too few {kind}: {kinds:?}"
        );
    }
    assert!(
        answered * 5 >= checks * 2,
        "the mirror answered only {answered} of {checks}: the test would prove little"
    );
}

#[actix_web::test]
async fn a_payment_our_pending_settles_leave_uncovered_is_insufficient_funds() {
    let devnet = Devnet::start(DevnetOptions {
        payer_balance: U256::from(10_000u64),
        ..DevnetOptions::default()
    })
    .await
    .unwrap();
    let url = devnet.rpc_url.clone();
    let app = mirror_app(devnet, &url, 5000).await;
    let payer = app.payer(0).address();
    let first = Payment::new(&app, 0, 6_000);
    let first_body = first.v2(&first.sign(app.payer(0)), 6_000);
    let second = Payment::new(&app, 0, 6_000);
    let second_body = second.v2(&second.sign(app.payer(0)), 6_000);

    // First sight: simulated, then the payer and the payee are seeded.
    assert_eq!(app.verify(&first_body).await["isValid"], true);
    wait_accounts(&app, 2).await;
    let answered = mirror_outcome(&app, "answered").await;
    assert_eq!(app.verify(&second_body).await["isValid"], true);
    assert_eq!(mirror_outcome(&app, "answered").await, answered + 1);

    // The first settles, and is not mined yet.
    app.devnet.set_automine(false).await.unwrap();
    let signer = app.devnet.facilitator_keys[0].address();
    let sent_before = app.devnet.nonce_of(signer).await.unwrap();
    let settling = spawn_settle(&app, first_body);
    wait_broadcast(&app, signer, sent_before).await;
    assert_eq!(app.balance(payer).await, U256::from(10_000u64), "not mined");
    let refused = app.verify(&second_body).await;
    assert_eq!(refused["isValid"], false, "{refused}");
    assert_eq!(refused["invalidReason"], "insufficient_funds");
    // The simulation alone (the chain does not know our pending settle yet) would accept it.
    assert!(mirror_outcome(&app, "answered").await >= answered + 2);

    // Mined: the balance has dropped, the second is still refused.
    app.devnet.mine().await.unwrap();
    let settled = settling.await.unwrap();
    assert_eq!(settled["success"], true, "{settled}");
    wait_mirror_at_head(&app).await;
    assert_eq!(app.balance(payer).await, U256::from(4_000u64));
    let still = app.verify(&second_body).await;
    assert_eq!(still["invalidReason"], "insufficient_funds", "{still}");

    // A top-up: now it is covered.
    app.devnet.set_automine(true).await.unwrap();
    app.devnet.mint(payer, U256::from(3_000u64)).await.unwrap();
    wait_mirror_at_head(&app).await;
    let answered = mirror_outcome(&app, "answered").await;
    let covered = app.verify(&second_body).await;
    assert_eq!(covered["isValid"], true, "{covered}");
    assert_eq!(mirror_outcome(&app, "answered").await, answered + 1);
}

#[actix_web::test]
async fn a_mirrored_eoa_verify_makes_no_rpc_call_and_the_rest_falls_back() {
    let devnet = Devnet::start(DevnetOptions::default()).await.unwrap();
    let proxy = TcpProxy::start(&devnet.rpc_url).await;
    let app = mirror_app(devnet, &proxy.url(), 1000).await;
    let body = |app: &ChainApp, payer: usize, value: u64| {
        let p = Payment::new(app, payer, value);
        p.v2(&p.sign(app.payer(payer)), value)
    };

    // An unknown payer: simulated (one eth_call), then seeded.
    let before = verify_rpc(&app).await;
    let unknown = mirror_outcome(&app, "fallback_unknown_account").await;
    assert_eq!(app.verify(&body(&app, 0, 1000)).await["isValid"], true);
    assert_eq!(
        mirror_outcome(&app, "fallback_unknown_account").await,
        unknown + 1
    );
    assert!(
        verify_rpc(&app).await > before,
        "an unknown payer is simulated"
    );
    wait_accounts(&app, 2).await;

    // Mirrored: no RPC call at all, for good and bad payments alike.
    let before = verify_rpc(&app).await;
    let answered = mirror_outcome(&app, "answered").await;
    assert_eq!(app.verify(&body(&app, 0, 2000)).await["isValid"], true);
    let poor = app.verify(&body(&app, 0, 1_000_000_000_000_000)).await;
    assert_eq!(poor["invalidReason"], "insufficient_funds", "{poor}");
    assert_eq!(mirror_outcome(&app, "answered").await, answered + 2);
    assert_eq!(verify_rpc(&app).await, before, "no eth_call, no batch");

    // A paused token: the simulation answers.
    as_owner(&app, IAdmin::pauseCall {}.abi_encode()).await;
    let paused = mirror_outcome(&app, "fallback_paused").await;
    let before = verify_rpc(&app).await;
    let answer = app.verify(&body(&app, 0, 3000)).await;
    assert_eq!(
        answer["invalidReason"], "invalid_transaction_state",
        "{answer}"
    );
    assert_eq!(mirror_outcome(&app, "fallback_paused").await, paused + 1);
    assert!(
        verify_rpc(&app).await > before,
        "a paused token is simulated"
    );
    as_owner(&app, IAdmin::unpauseCall {}.abi_encode()).await;

    // A stale head (the node stops answering): never answered from memory.
    proxy.freeze();
    let stale = mirror_outcome(&app, "fallback_stale").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = app.post_x402("/api/v1/verify", &body(&app, 0, 10)).await;
        if mirror_outcome(&app, "fallback_stale").await > stale {
            assert_ne!(
                res.status(),
                200,
                "a stale mirror's fallback reaches the node"
            );
            break;
        }
        assert_eq!(res.status(), 200, "answered from memory while fresh");
        assert!(Instant::now() < deadline, "the head never went stale");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.pass();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answered = mirror_outcome(&app, "answered").await;
        let answer = app.verify(&body(&app, 0, 10)).await;
        if mirror_outcome(&app, "answered").await > answered {
            assert_eq!(answer["isValid"], true, "{answer}");
            break;
        }
        assert!(Instant::now() < deadline, "the mirror never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn settle_mirror_outcome(app: &ChainApp, outcome: &str) -> u64 {
    let label = format!("outcome=\"{outcome}\"");
    metric(app, "x402_settle_mirror_total", &[&label]).await
}

async fn eth_calls(app: &ChainApp) -> u64 {
    metric(
        app,
        "x402_rpc_request_duration_seconds_count",
        &["method=\"eth_call\""],
    )
    .await
}

/// `settlement.batch_mirror_precheck`: a batched settle of a mirrored EOA payer is cleared by
/// the mirror, with no `eth_call`; one it clears wrongly (the payer's balance was taken by a
/// transaction mined first in the same block, which the mirror could not see) fails alone in
/// its batch and is answered failed, while the batch's other payment is paid.
#[actix_web::test]
async fn batched_settles_the_mirror_clears_are_not_simulated_and_a_wrong_clearance_fails_alone() {
    let devnet = Devnet::start(DevnetOptions {
        payer_balance: U256::from(10_000u64),
        multicall3: true,
        ..DevnetOptions::default()
    })
    .await
    .unwrap();
    let url = devnet.rpc_url.clone();
    let app = ChainApp::start_app_full(
        TestDb::create(Db::Sqlite).await,
        &devnet,
        devnet.facilitator_keys[..1].to_vec(),
        json!({ "rpc_url": url }),
        json!({
            "verify": { "mirror": true, "mirror_max_head_age_ms": 1500 },
            "rpc": { "probe_interval_ms": 100 },
            "settlement": { "batch_max": 10, "batch_window_ms": 300 },
        }),
    )
    .await;
    let app = ChainApp::with_merchant(app, devnet).await;
    let signed = |payer: usize, value: u64| {
        let p = Payment::new(&app, payer, value);
        let signature = p.sign(app.payer(payer));
        (p.v2(&signature, value), p, signature)
    };
    let (payer0, payer1) = (app.payer(0).address(), app.payer(1).address());

    // Payers 0 and 1 and the payee get mirrored (a verify the mirror cannot answer seeds them).
    for payer in 0..2 {
        assert_eq!(app.verify(&signed(payer, 1).0).await["isValid"], true);
    }
    wait_accounts(&app, 3).await;
    wait_mirror_at_head(&app).await;

    // Three settles of mirrored payers: one batch, cleared by the mirror, no eth_call. A batch
    // closes at once when no other settle is on its way, so on a loaded machine a settle may
    // not have arrived in time: such an attempt (every payment still paid, exactly) is undone
    // by minting the payers what they paid, and tried again, at most 8 times.
    let mut attempt = 0;
    let before = loop {
        attempt += 1;
        let calls = eth_calls(&app).await;
        let cleared = settle_mirror_outcome(&app, "answered").await;
        let before = app.balance(PAY_TO).await;
        let bodies = [signed(0, 1000).0, signed(1, 1000).0, signed(0, 2000).0];
        let answers = futures::future::join_all(bodies.iter().map(|b| app.settle(b))).await;
        for a in &answers {
            assert_eq!(a["success"], true, "{a}");
        }
        assert_eq!(app.balance(PAY_TO).await, before + U256::from(4000u64));
        assert_eq!(app.balance(payer0).await, U256::from(7000u64));
        if answers
            .iter()
            .all(|a| a["transaction"] == answers[0]["transaction"])
        {
            assert_eq!(settle_mirror_outcome(&app, "answered").await, cleared + 3);
            assert_eq!(eth_calls(&app).await, calls, "no simulation");
            break before;
        }
        assert!(
            attempt < 8,
            "three concurrent settles never went out in one batch"
        );
        app.devnet.mint(payer0, U256::from(3000u64)).await.unwrap();
        app.devnet.mint(payer1, U256::from(1000u64)).await.unwrap();
        wait_mirror_at_head(&app).await;
    };

    // Behind our back: payer 0's own authorization for all it has, sent by someone else with
    // a high tip (first in the next block), still in the pool where the mirror cannot see it.
    // Our two settles: the mirror still sees payer 0's 7000 and clears both; they go out in one
    // batch, where payer 0's fails alone. An attempt whose settles went out apart (the same
    // race as above) is undone by minting and tried again, at most 8 times.
    let (mut attempt, mut before) = (0, before);
    let (answers, outside, calls) = loop {
        attempt += 1;
        wait_mirror_at_head(&app).await;
        let calls = eth_calls(&app).await;
        app.devnet.set_automine(false).await.unwrap();
        let (_, elsewhere, signature) = signed(0, 7000);
        // A fresh outsider (not the deployer, whose nonce the devnet's minting provider keeps).
        let stranger = alloy::signers::local::PrivateKeySigner::random();
        app.devnet
            .set_eth_balance(stranger.address(), U256::from(10u64).pow(U256::from(18u64)))
            .await
            .unwrap();
        let outsider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(stranger.clone()))
            .connect_http(app.devnet.rpc_url.parse().unwrap());
        let tx = TransactionRequest::default()
            .from(stranger.address())
            .to(app.devnet.usdc)
            .input(Bytes::from(twa_calldata(&elsewhere, &signature)).into())
            .nonce(0)
            .with_chain_id(app.devnet.chain_id)
            .gas_limit(300_000)
            .max_fee_per_gas(200_000_000_000)
            .max_priority_fee_per_gas(100_000_000_000);
        let outside = *outsider.send_transaction(tx).await.unwrap().tx_hash();

        let signer = app.devnet.facilitator_keys[0].address();
        let sent_before = app.devnet.nonce_of(signer).await.unwrap();
        let cleared = settle_mirror_outcome(&app, "answered").await;
        let settling: Vec<_> = [signed(0, 5000).0, signed(1, 1000).0]
            .into_iter()
            .map(|body| spawn_settle(&app, body))
            .collect();
        wait_broadcast(&app, signer, sent_before).await;
        app.devnet.mine().await.unwrap();
        // Mined as they come (one block each), until both are answered.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !settling.iter().all(|s| s.is_finished()) {
            assert!(Instant::now() < deadline, "the settles were never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
            app.devnet.mine().await.unwrap();
        }
        app.devnet.set_automine(true).await.unwrap();
        let mut answers = Vec::new();
        for s in settling {
            answers.push(s.await.unwrap());
        }
        if answers[0]["transaction"] == answers[1]["transaction"] {
            assert_eq!(settle_mirror_outcome(&app, "answered").await, cleared + 2);
            break (answers, outside, calls);
        }
        assert!(
            attempt < 8,
            "two concurrent settles never went out in one batch"
        );
        // Apart: payer 0's settle failed (in its own transaction, or refused once the mirror saw
        // the outsider's); give both payers back what the outsider and payer 1's settle took.
        assert_eq!(answers[0]["success"], false, "{}", answers[0]);
        assert_eq!(answers[1]["success"], true, "{}", answers[1]);
        app.devnet.mint(payer0, U256::from(7000u64)).await.unwrap();
        app.devnet.mint(payer1, U256::from(1000u64)).await.unwrap();
        before += U256::from(7000u64 + 1000);
    };

    let outside_receipt = app.devnet.receipt(outside).await.unwrap().expect("mined");
    assert!(
        outside_receipt.status(),
        "the outsider's transfer went first"
    );
    let (wrong, right) = (&answers[0], &answers[1]);
    assert_eq!(wrong["success"], false, "{wrong}");
    assert_eq!(wrong["errorReason"], "invalid_transaction_state", "{wrong}");
    assert_eq!(right["success"], true, "{right}");
    assert_eq!(
        outside_receipt.block_number,
        right["blockNumber"].as_u64(),
        "one block: {right}"
    );
    assert_eq!(app.balance(payer0).await, U256::ZERO);
    assert_eq!(app.balance(payer1).await, U256::from(8000u64));
    assert_eq!(
        app.balance(PAY_TO).await,
        before + U256::from(4000u64 + 7000 + 1000)
    );
    assert_eq!(eth_calls(&app).await, calls, "still no simulation");
}
