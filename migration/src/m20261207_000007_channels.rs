//! Payment channels (`batch-settlement`): one row per channel this facilitator has served, in
//! the database the fleet shares, so that any instance verifies any channel and a restart loses
//! no accepted voucher.
//!
//! Amounts are `uint128`, stored as 39-digit zero-padded decimal strings: they compare as
//! numbers in SQL on both databases (SQLite has no integer that wide), so "raise the accepted
//! amount only if the new one is higher" is one conditional `UPDATE`.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Channels {
    Table,
    ChannelId,
    Network,
    Payer,
    PayerAuthorizer,
    Receiver,
    ReceiverAuthorizer,
    Token,
    WithdrawDelay,
    Salt,
    Balance,
    TotalClaimed,
    WithdrawRequestedAt,
    RefundNonce,
    Accepted,
    AcceptedSignature,
    SyncedAt,
    UpdatedAt,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let amount = |c: Channels| ColumnDef::new(c).string_len(39).not_null().to_owned();
        let address = |c: Channels| ColumnDef::new(c).string_len(42).not_null().to_owned();
        m.create_table(
            Table::create()
                .table(Channels::Table)
                .col(
                    ColumnDef::new(Channels::ChannelId)
                        .string_len(66)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Channels::Network).string_len(64).not_null())
                .col(address(Channels::Payer))
                .col(address(Channels::PayerAuthorizer))
                .col(address(Channels::Receiver))
                .col(address(Channels::ReceiverAuthorizer))
                .col(address(Channels::Token))
                .col(
                    ColumnDef::new(Channels::WithdrawDelay)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(Channels::Salt).string_len(66).not_null())
                // Mirrored from the contract when `synced_at` says.
                .col(amount(Channels::Balance))
                .col(amount(Channels::TotalClaimed))
                .col(
                    ColumnDef::new(Channels::WithdrawRequestedAt)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Channels::RefundNonce)
                        .string_len(78)
                        .not_null(),
                )
                // The highest voucher accepted, and its signature (what a claim sends).
                .col(amount(Channels::Accepted))
                .col(ColumnDef::new(Channels::AcceptedSignature).text())
                .col(ColumnDef::new(Channels::SyncedAt).big_integer().not_null())
                .col(ColumnDef::new(Channels::UpdatedAt).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_channels_receiver_token")
                .table(Channels::Table)
                .col(Channels::Receiver)
                .col(Channels::Token)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Channels::Table).to_owned())
            .await
    }
}
