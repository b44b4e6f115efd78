//! Safe retries of `/settle` (issue "One payment, one success").
//!
//! - `idempotency_keys`: one row per (client key, idempotency key): the request it was first
//!   used with (`request_hash`) and, once known, the answer to replay. Kept at least 24 h.
//! - `settlements.idempotency_key`: the idempotency key (scoped by `client_id`) of the request
//!   that claimed the authorization; only a retry carrying it may be answered from the row.
//! - The payment id is no longer unique across the ledger: it is an idempotency key of one
//!   client, and two clients may pick the same one.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Id,
    ClientId,
    IdemKey,
    RequestHash,
    ResponseStatus,
    ResponseBody,
    IsFinal,
    CreatedAt,
    UpdatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Settlements {
    Table,
    IdempotencyKey,
    ClientId,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(IdempotencyKeys::Table)
                .col(
                    ColumnDef::new(IdempotencyKeys::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(IdempotencyKeys::ClientId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(IdempotencyKeys::IdemKey)
                        .string_len(300)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(IdempotencyKeys::RequestHash)
                        .string_len(66)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(IdempotencyKeys::ResponseStatus)
                        .small_integer()
                        .null(),
                )
                .col(ColumnDef::new(IdempotencyKeys::ResponseBody).text().null())
                .col(
                    ColumnDef::new(IdempotencyKeys::IsFinal)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(
                    ColumnDef::new(IdempotencyKeys::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(IdempotencyKeys::UpdatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(IdempotencyKeys::ExpiresAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_idempotency_keys_client_key")
                .table(IdempotencyKeys::Table)
                .col(IdempotencyKeys::ClientId)
                .col(IdempotencyKeys::IdemKey)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_idempotency_keys_expires_at")
                .table(IdempotencyKeys::Table)
                .col(IdempotencyKeys::ExpiresAt)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Settlements::Table)
                .add_column(
                    ColumnDef::new(Settlements::IdempotencyKey)
                        .string_len(300)
                        .null(),
                )
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("uq_settlements_payment_id")
                .table(Settlements::Table)
                .to_owned(),
        )
        .await?;
        // Lookups by the caller's own client key (`GET /settlements?network=&payer=&nonce=`
        // goes through the authorization index; this one serves per-client listings).
        m.create_index(
            Index::create()
                .name("idx_settlements_client_id")
                .table(Settlements::Table)
                .col(Settlements::ClientId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("idx_settlements_client_id")
                .table(Settlements::Table)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Settlements::Table)
                .drop_column(Settlements::IdempotencyKey)
                .to_owned(),
        )
        .await?;
        // `uq_settlements_payment_id` is not restored: payment ids that two clients share
        // would make it fail, and nothing relies on it.
        m.drop_table(Table::drop().table(IdempotencyKeys::Table).to_owned())
            .await
    }
}
