//! Many instances, one truth (issue "Survive a failing node, and run as a fleet").
//!
//! - `instances`: every running instance and its heartbeat; one whose heartbeat is older than
//!   the lease TTL is dead, and its unfinished ledger rows are adopted by the living.
//! - `signer_leases`: which instance drives each (network, signer key), under which epoch,
//!   until when. Renewed by heartbeat, taken over once expired; the epoch fences a paused old
//!   holder off the ledger and the chain.
//! - `settlements.instance_id`: the instance responsible for the row's next step (its claimant,
//!   then its sender); `queued_at`: waiting for a lease holder to send it, with the call to make
//!   (`call_to`, `calldata`); `raw_tx`: the signed transaction, to re-broadcast the very same
//!   bytes after a takeover or a reorg.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Instances {
    Table,
    Id,
    Host,
    Pid,
    StartedAt,
    HeartbeatAt,
}

#[derive(DeriveIden)]
enum SignerLeases {
    Table,
    Id,
    Network,
    Signer,
    Holder,
    Epoch,
    ExpiresAt,
    RenewedAt,
}

#[derive(DeriveIden)]
enum Settlements {
    Table,
    InstanceId,
    QueuedAt,
    CallTo,
    Calldata,
    RawTx,
    Status,
    Network,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Instances::Table)
                .col(
                    ColumnDef::new(Instances::Id)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Instances::Host).string_len(255).not_null())
                .col(ColumnDef::new(Instances::Pid).integer().not_null())
                .col(ts(Instances::StartedAt))
                .col(ts(Instances::HeartbeatAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(SignerLeases::Table)
                .col(
                    ColumnDef::new(SignerLeases::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(SignerLeases::Network)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(SignerLeases::Signer)
                        .string_len(42)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(SignerLeases::Holder)
                        .string_len(64)
                        .not_null(),
                )
                .col(ColumnDef::new(SignerLeases::Epoch).big_integer().not_null())
                .col(ts(SignerLeases::ExpiresAt))
                .col(ts(SignerLeases::RenewedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_signer_leases_network_signer")
                .table(SignerLeases::Table)
                .col(SignerLeases::Network)
                .col(SignerLeases::Signer)
                .unique()
                .to_owned(),
        )
        .await?;
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for col in [
            ColumnDef::new(Settlements::InstanceId)
                .string_len(64)
                .null()
                .to_owned(),
            ColumnDef::new(Settlements::QueuedAt)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
            ColumnDef::new(Settlements::CallTo)
                .string_len(42)
                .null()
                .to_owned(),
            ColumnDef::new(Settlements::Calldata)
                .text()
                .null()
                .to_owned(),
            ColumnDef::new(Settlements::RawTx).text().null().to_owned(),
        ] {
            m.alter_table(
                Table::alter()
                    .table(Settlements::Table)
                    .add_column(col)
                    .to_owned(),
            )
            .await?;
        }
        // Lease holders look for queued rows of their networks.
        m.create_index(
            Index::create()
                .name("idx_settlements_network_status")
                .table(Settlements::Table)
                .col(Settlements::Network)
                .col(Settlements::Status)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("idx_settlements_network_status")
                .table(Settlements::Table)
                .to_owned(),
        )
        .await?;
        for col in [
            Settlements::RawTx,
            Settlements::Calldata,
            Settlements::CallTo,
            Settlements::QueuedAt,
            Settlements::InstanceId,
        ] {
            m.alter_table(
                Table::alter()
                    .table(Settlements::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        m.drop_table(Table::drop().table(SignerLeases::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Instances::Table).to_owned())
            .await
    }
}
