//! The ledger's group commit (`ledger::GroupWriter`): claims and mined outcomes queued
//! together are committed in one transaction (a few multi-row statements), and each still gets
//! its own answer: of two claims of one authorization, exactly one is `New`; of mined outcomes
//! of different transactions in one group, each row gets its own (the rows one transaction
//! carried alike are written by one statement), with the webhook events of the rows whose
//! account wants them and none for the others; on SQLite and PostgreSQL.

use std::collections::HashMap;

use alloy::primitives::{Address, B256};
use facilitator_actors::ledger::{self, Claim, GroupWriter, Key, Mined, NewSettlement};
use migration::MigratorTrait;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, Database, EntityTrait};

use crate::helpers::*;

/// Every other pair of payments is a key of the account with a webhook endpoint.
fn client_of(i: u64) -> &'static str {
    if i % 4 < 2 {
        "cl_hooked"
    } else {
        "cl_plain"
    }
}

fn new_settlement(key: Key, i: u64) -> NewSettlement {
    NewSettlement {
        key,
        pay_to: Address::repeat_byte(0x22).to_checksum(None),
        amount: (1000 + i).to_string(),
        valid_after: 0,
        valid_before: i64::MAX,
        x402_version: 2,
        request_hash: B256::repeat_byte(i as u8),
        payment_id: None,
        payload: serde_json::json!({}),
        client_id: Some(client_of(i).into()),
        idempotency_key: None,
        instance_id: "inst_test".into(),
    }
}

async fn claims_and_outcomes_committed_together(kind: Db) {
    let test_db = TestDb::create(kind).await;
    let db = Database::connect(&test_db.url).await.unwrap();
    migration::Migrator::up(&db, None).await.unwrap();
    let writer = GroupWriter::start(db.clone());
    // Two accounts, one key each; the first has an endpoint for the settlements' outcomes.
    let now = chrono::Utc::now();
    for (n, client_id) in ["cl_hooked", "cl_plain"].into_iter().enumerate() {
        let user = entities::user::ActiveModel {
            email: Set(format!("u{n}@example.com")),
            password_hash: Set("x".into()),
            is_admin: Set(false),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&db)
        .await
        .unwrap();
        entities::client::ActiveModel {
            client_id: Set(client_id.into()),
            user_id: Set(user.id),
            title: Set(client_id.into()),
            scope: Set("verify,settle".into()),
            token_hash: Set(client_id.into()),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(&db)
        .await
        .unwrap();
        if n == 0 {
            entities::webhook::ActiveModel {
                user_id: Set(user.id),
                url: Set("https://hooks.example.com/x402".into()),
                events: Set(",settlement.mined,settlement.confirmed,settlement.failed,".into()),
                secret: Set("whsec_test".into()),
                enabled: Set(true),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            }
            .insert(&db)
            .await
            .unwrap();
        }
    }

    // 100 authorizations, each claimed twice, all at once.
    let keys: Vec<Key> = (0..100u64)
        .map(|i| {
            Key::new(
                "base-sepolia",
                Address::repeat_byte(0x11),
                Address::repeat_byte(0x33),
                B256::from(alloy::primitives::U256::from(i)),
            )
        })
        .collect();
    let claims = keys
        .iter()
        .enumerate()
        .flat_map(|(i, k)| [(i, k.clone()), (i, k.clone())])
        .map(|(i, k)| {
            let writer = writer.clone();
            async move { (i, writer.claim(&new_settlement(k, i as u64)).await.unwrap()) }
        });
    let answers = futures::future::join_all(claims).await;
    let mut new_per_key: HashMap<usize, Vec<i64>> = HashMap::new();
    let mut existing: Vec<(usize, i64)> = Vec::new();
    for (i, claim) in &answers {
        match claim {
            Claim::New(row) => new_per_key.entry(*i).or_default().push(row.id),
            Claim::Existing(row) => existing.push((*i, row.id)),
        }
    }
    assert_eq!(new_per_key.len(), 100, "every authorization claimed");
    assert!(
        new_per_key.values().all(|ids| ids.len() == 1),
        "one claim each"
    );
    assert_eq!(existing.len(), 100);
    assert!(
        existing.iter().all(|(i, id)| new_per_key[i] == [*id]),
        "the copy is answered with the row its twin inserted"
    );
    let rows = entities::settlement::Entity::find().all(&db).await.unwrap();
    assert_eq!(rows.len(), 100);

    // Their outcomes, all at once, in two transactions: the even rows paid by one, the odd
    // ones failed in another. Each row moves once; a second record of it does not.
    let paid = Mined {
        success: true,
        block_number: 7,
        gas_used: 44_000,
        fee_wei: 1,
        final_at_once: true,
    };
    let reverted = Mined {
        success: false,
        gas_used: 30_000,
        ..paid.clone()
    };
    let mut ids: Vec<i64> = new_per_key.values().map(|ids| ids[0]).collect();
    ids.sort();
    let outcome = |id: i64| {
        if id % 2 == 0 {
            (B256::repeat_byte(0xaa), paid.clone())
        } else {
            (B256::repeat_byte(0xbb), reverted.clone())
        }
    };
    let marks = ids.iter().chain(ids.iter().take(10)).map(|id| {
        let writer = writer.clone();
        let (tx_hash, mined) = outcome(*id);
        async move {
            writer
                .mark_mined(*id, tx_hash, &mined, "invalid_transaction_state")
                .await
                .unwrap()
        }
    });
    let moved = futures::future::join_all(marks).await;
    assert_eq!(
        moved.iter().filter(|m| **m).count(),
        100,
        "each row moved once"
    );
    assert!(
        moved[100..].iter().all(|m| !m),
        "a second record moves nothing"
    );
    let rows = entities::settlement::Entity::find().all(&db).await.unwrap();
    let events = entities::webhook_event::Entity::find()
        .all(&db)
        .await
        .unwrap();
    for r in &rows {
        let mut told: Vec<&str> = events
            .iter()
            .filter(|e| e.settlement_id == Some(r.id))
            .map(|e| e.event_type.as_str())
            .collect();
        told.sort();
        let expected: &[&str] = match (r.client_id.as_deref(), r.id % 2 == 0) {
            (Some("cl_hooked"), true) => &["settlement.confirmed", "settlement.mined"],
            (Some("cl_hooked"), false) => &["settlement.failed"],
            _ => &[],
        };
        assert_eq!(told, expected, "events of row {}", r.id);
        let (tx_hash, _) = outcome(r.id);
        assert_eq!(r.tx_hash, Some(tx_hash.to_string()), "row {}", r.id);
        if r.id % 2 == 0 {
            assert_eq!(r.status, ledger::CONFIRMED);
            assert_eq!(r.gas_used, Some(44_000));
            assert_eq!(r.error_reason, None);
        } else {
            assert_eq!(r.status, ledger::FAILED);
            assert_eq!(r.gas_used, Some(30_000));
            assert_eq!(r.error_reason.as_deref(), Some("invalid_transaction_state"));
        }
    }
    db.close().await.ok();
}

#[actix_web::test]
async fn group_committed_claims_give_one_claim_per_authorization_sqlite() {
    claims_and_outcomes_committed_together(Db::Sqlite).await;
}

#[actix_web::test]
async fn group_committed_claims_give_one_claim_per_authorization_postgres() {
    claims_and_outcomes_committed_together(Db::Postgres).await;
}
