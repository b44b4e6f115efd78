//! Schema migrations of the facilitator, shared by SQLite and PostgreSQL.
//!
//! Each migration is `mYYYYMMDD_HHMMSS_what.rs` with `up` and `down`. This crate never imports
//! `entities`: a migration describes the schema as it was on its day, not as the code is now.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_init;
mod m20261123_000002_client_networks;
mod m20261123_000003_client_settle_credits;
mod m20261201_000001_settle_idempotency;
mod m20261201_000002_client_controls;
mod m20261201_000003_throttles;
mod m20261201_000004_fleet;
mod m20261207_000003_account_limits;
mod m20261207_000004_rate_limit_states;
mod m20261207_000005_webhooks;
mod m20261207_000007_channels;
mod m20261207_000025_svm_addresses;
mod m20261207_000030_channel_deposits;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_init::Migration),
            Box::new(m20261123_000002_client_networks::Migration),
            Box::new(m20261123_000003_client_settle_credits::Migration),
            Box::new(m20261201_000001_settle_idempotency::Migration),
            Box::new(m20261201_000002_client_controls::Migration),
            Box::new(m20261201_000003_throttles::Migration),
            Box::new(m20261201_000004_fleet::Migration),
            Box::new(m20261207_000003_account_limits::Migration),
            Box::new(m20261207_000004_rate_limit_states::Migration),
            Box::new(m20261207_000005_webhooks::Migration),
            Box::new(m20261207_000007_channels::Migration),
            Box::new(m20261207_000025_svm_addresses::Migration),
            Box::new(m20261207_000030_channel_deposits::Migration),
        ]
    }
}
