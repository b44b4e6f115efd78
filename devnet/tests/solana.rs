//! The local Solana cluster is real: the official client's payment transaction, co-signed by a
//! fee payer, moves exactly the amount with the real SPL Token and Token-2022 programs; the
//! runner goes away with its owner.

use std::time::{Duration, Instant};

use devnet::solana::{
    add_signatures, decode_transaction, encode_transaction, Keypair, Pubkey, SolanaCluster,
    SolanaClusterOptions, VersionedMessage, ASSOCIATED_TOKEN_PROGRAM, COMPUTE_BUDGET_PROGRAM,
    DEVNET_NETWORK, MEMO_PROGRAM, TOKEN_2022_PROGRAM, TOKEN_PROGRAM,
};
use solana_signer::Signer as _;

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

async fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(pid) {
        assert!(Instant::now() < deadline, "surfnet {pid} still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A cluster with one buyer, one fee payer, and a payee with (empty) token accounts.
async fn one_buyer(slot_time_ms: u64) -> (SolanaCluster, Pubkey) {
    let cluster = SolanaCluster::start_with(SolanaClusterOptions {
        payers: 1,
        fee_payers: 1,
        slot_time_ms,
        ..Default::default()
    })
    .await
    .expect("cluster");
    let pay_to = Keypair::new().pubkey();
    cluster.create_token_accounts(&pay_to).await.unwrap();
    (cluster, pay_to)
}

#[tokio::test]
async fn official_payment_lands_with_token_and_token_2022() {
    let t0 = Instant::now();
    let cluster = SolanaCluster::start_with(SolanaClusterOptions {
        payers: 2,
        payer_tokens: 5_000_000,
        ..Default::default()
    })
    .await
    .expect("cluster");
    eprintln!(
        "surfnet READY after {:?}; mints and payers set up after {:?}",
        cluster.startup,
        t0.elapsed()
    );
    assert!(cluster.rpc.genesis_hash().await.unwrap().len() >= 32);
    assert_eq!(DEVNET_NETWORK, "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1");

    // The mints are real mint accounts of their programs, 6 decimals.
    for mint in [cluster.usdc, cluster.usdc_2022] {
        let info = cluster.rpc.account(&mint.address).await.unwrap().unwrap();
        assert_eq!(info.owner, mint.token_program);
        assert_eq!(info.data[44], 6, "decimals byte of the mint");
    }
    assert_eq!(cluster.usdc.token_program, TOKEN_PROGRAM);
    assert_eq!(cluster.usdc_2022.token_program, TOKEN_2022_PROGRAM);
    let fee_payer = &cluster.fee_payers[0];
    assert!(cluster.rpc.balance(&fee_payer.pubkey()).await.unwrap() >= 1_000_000_000);

    let buyer = &cluster.payers[0];
    let pay_to = Keypair::new().pubkey();
    cluster.create_token_accounts(&pay_to).await.unwrap();

    for mint in [cluster.usdc, cluster.usdc_2022] {
        assert_eq!(
            cluster.token_balance(&buyer.pubkey(), &mint).await.unwrap(),
            5_000_000
        );
        let payment = cluster
            .payment(&mint, &buyer.pubkey(), &pay_to, 1_000, &fee_payer.pubkey())
            .await
            .unwrap();
        let tx = payment.build(&[buyer]).unwrap();

        // The official shape: v0, no lookups, 2 signers (fee payer first), 4 instructions.
        let VersionedMessage::V0(m) = &tx.message else {
            panic!("not v0")
        };
        assert!(m.address_table_lookups.is_empty());
        assert_eq!(m.header.num_required_signatures, 2);
        assert_eq!(m.account_keys[0], fee_payer.pubkey());
        let programs: Vec<_> = m
            .instructions
            .iter()
            .map(|ix| m.account_keys[ix.program_id_index as usize])
            .collect();
        assert_eq!(
            programs,
            [
                COMPUTE_BUDGET_PROGRAM,
                COMPUTE_BUDGET_PROGRAM,
                mint.token_program,
                MEMO_PROGRAM
            ]
        );
        assert_eq!(m.instructions[0].data, [2, 0x20, 0x4e, 0, 0]); // limit 20000
        assert_eq!(m.instructions[1].data, [3, 1, 0, 0, 0, 0, 0, 0, 0]); // price 1
        assert_eq!(m.instructions[3].data.len(), 32); // 16 random bytes as hex
        assert!(m.instructions[3].accounts.is_empty());
        assert!(!m.account_keys.contains(&ASSOCIATED_TOKEN_PROGRAM));
        // Buyer signed, fee payer not yet.
        assert_eq!(tx.signatures[0], Default::default());
        assert_ne!(tx.signatures[1], Default::default());
        // It survives the wire form.
        let wire = encode_transaction(&tx);
        assert_eq!(decode_transaction(&wire).unwrap(), tx);

        // Without the fee payer's signature the cluster refuses it.
        let sim = cluster.rpc.simulate_transaction(&tx).await.unwrap();
        assert!(!sim["err"].is_null(), "unsigned fee payer simulated: {sim}");

        // Co-signed, it simulates and lands: exactly the amount moves.
        let mut tx = tx;
        add_signatures(&mut tx, &[fee_payer]);
        let sim = cluster.rpc.simulate_transaction(&tx).await.unwrap();
        assert!(sim["err"].is_null(), "simulation: {sim}");
        let fee_before = cluster.rpc.balance(&fee_payer.pubkey()).await.unwrap();
        let sig = cluster.rpc.send_and_confirm(&tx).await.unwrap();
        assert_eq!(sig, tx.signatures[0]);
        let status = cluster.rpc.signature_status(&sig).await.unwrap().unwrap();
        assert!(status.is_confirmed() && status.err.is_none(), "{status:?}");
        assert_eq!(cluster.token_balance(&pay_to, &mint).await.unwrap(), 1_000);
        assert_eq!(
            cluster.token_balance(&buyer.pubkey(), &mint).await.unwrap(),
            4_999_000
        );
        // The fee payer paid the fee (5000 per signature + the priority fee).
        let fee_after = cluster.rpc.balance(&fee_payer.pubkey()).await.unwrap();
        assert_eq!(fee_before - fee_after, 10_001);
    }
    let pid = cluster.pid().unwrap();
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        let rss = status.lines().find(|l| l.starts_with("VmRSS"));
        eprintln!("surfnet after the payments: {}", rss.unwrap_or("?"));
    }
    cluster.stop().await;
    wait_gone(pid).await;
}

#[tokio::test]
async fn the_builder_variants_are_real_transactions() {
    // A legacy message, and a v0 one loading the destination from a lookup table, both land:
    // the knobs make transactions the cluster accepts, not malformed bytes.
    let (cluster, pay_to) = one_buyer(400).await;
    let buyer = &cluster.payers[0];
    let fee_payer = &cluster.fee_payers[0];
    let mint = cluster.usdc_2022;

    let mut legacy = cluster
        .payment(&mint, &buyer.pubkey(), &pay_to, 5, &fee_payer.pubkey())
        .await
        .unwrap();
    legacy.legacy = true;
    let mut tx = legacy.build(&[buyer]).unwrap();
    assert!(matches!(tx.message, VersionedMessage::Legacy(_)));
    add_signatures(&mut tx, &[fee_payer]);
    cluster.rpc.send_and_confirm(&tx).await.unwrap();

    let mut looked_up = cluster
        .payment(&mint, &buyer.pubkey(), &pay_to, 6, &fee_payer.pubkey())
        .await
        .unwrap();
    let table = cluster
        .create_lookup_table(&[looked_up.destination])
        .await
        .unwrap();
    looked_up.lookup_tables = vec![table.clone()];
    let mut tx = looked_up.build(&[buyer]).unwrap();
    let VersionedMessage::V0(m) = &tx.message else {
        panic!("not v0")
    };
    assert_eq!(m.address_table_lookups.len(), 1);
    assert_eq!(m.address_table_lookups[0].account_key, table.key);
    assert!(!m.account_keys.contains(&looked_up.destination));
    add_signatures(&mut tx, &[fee_payer]);
    cluster.rpc.send_and_confirm(&tx).await.unwrap();
    assert_eq!(cluster.token_balance(&pay_to, &mint).await.unwrap(), 11);

    // The fee payer as the transfer's authority (out of its own token account): a real
    // transaction too, signed by the fee payer alone.
    cluster.fund(&fee_payer.pubkey(), 100).await.unwrap();
    let theft = cluster
        .payment(&mint, &buyer.pubkey(), &pay_to, 7, &fee_payer.pubkey())
        .await
        .unwrap()
        .from_owner(&fee_payer.pubkey());
    let tx = theft.build(&[buyer, fee_payer]).unwrap();
    assert_eq!(tx.message.header().num_required_signatures, 1);
    cluster.rpc.send_and_confirm(&tx).await.unwrap();
    assert_eq!(cluster.token_balance(&pay_to, &mint).await.unwrap(), 18);
}

#[tokio::test]
async fn a_blockhash_expires_and_its_payment_never_lands() {
    let (cluster, pay_to) = one_buyer(400).await;
    let buyer = &cluster.payers[0];
    let fee_payer = &cluster.fee_payers[0];
    let (blockhash, last_valid) = cluster.rpc.latest_blockhash().await.unwrap();
    assert!(cluster.rpc.is_blockhash_valid(&blockhash).await.unwrap());
    let mut payment = cluster
        .payment(
            &cluster.usdc,
            &buyer.pubkey(),
            &pay_to,
            7,
            &fee_payer.pubkey(),
        )
        .await
        .unwrap();
    payment.blockhash = blockhash.clone();
    let mut tx = payment.build(&[buyer]).unwrap();
    add_signatures(&mut tx, &[fee_payer]);

    let height = cluster.rpc.expire_blockhash(last_valid).await.unwrap();
    assert!(height > last_valid);
    assert!(!cluster.rpc.is_blockhash_valid(&blockhash).await.unwrap());
    assert!(cluster.rpc.send_transaction(&tx).await.is_err());
    assert!(cluster
        .rpc
        .signature_status(&tx.signatures[0])
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        cluster.token_balance(&pay_to, &cluster.usdc).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn a_payment_sent_while_the_clock_is_paused_is_confirmed_only_after_resume() {
    let (cluster, pay_to) = one_buyer(100).await;
    let buyer = &cluster.payers[0];
    let fee_payer = &cluster.fee_payers[0];
    let payment = cluster
        .payment(
            &cluster.usdc,
            &buyer.pubkey(),
            &pay_to,
            9,
            &fee_payer.pubkey(),
        )
        .await
        .unwrap();
    let mut tx = payment.build(&[buyer]).unwrap();
    add_signatures(&mut tx, &[fee_payer]);

    cluster.pause_clock().await.unwrap();
    let h = cluster.rpc.block_height().await.unwrap();
    let sig = cluster.rpc.send_transaction(&tx).await.unwrap();
    // Ten slot times later: no new block, and the payment is not confirmed (surfnet executes
    // it at once: it is "processed", and account reads already show it).
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(cluster.rpc.block_height().await.unwrap(), h);
    let status = cluster.rpc.signature_status(&sig).await.unwrap();
    eprintln!("while paused: {status:?}");
    assert!(
        status.as_ref().is_none_or(|s| !s.is_confirmed()),
        "{status:?}"
    );

    cluster.resume_clock().await.unwrap();
    cluster
        .rpc
        .confirm(&sig, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(cluster.rpc.block_height().await.unwrap() > h);
    assert_eq!(
        cluster.token_balance(&pay_to, &cluster.usdc).await.unwrap(),
        9
    );
}

#[tokio::test]
async fn the_runner_exits_when_its_stdin_closes() {
    // As when the test process that owns it dies: its end of the pipe closes.
    let path = devnet::solana::surfnet_path().expect("runner");
    let mut child = std::process::Command::new(path)
        .args(["--port", "0"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert!(line.starts_with("READY http://127.0.0.1:"), "{line}");
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "runner did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
