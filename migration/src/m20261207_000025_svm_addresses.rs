//! Room for Solana (SVM) payments in the ledger and the x402 metrics: base58 addresses (up to
//! 44 characters: mint, payer, payee, fee payer) where 42-character EVM addresses were
//! assumed, and a transaction id that is a base58 signature (up to 88 characters) where a
//! 66-character hash was. SQLite does not enforce `VARCHAR` lengths (and cannot alter a
//! column): only PostgreSQL changes.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Settlements {
    Table,
    Asset,
    Payer,
    PayTo,
    TxHash,
    Signer,
}

#[derive(DeriveIden)]
enum X402MetricsDaily {
    Table,
    Asset,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

async fn widths(m: &SchemaManager<'_>, address: u32, tx: u32) -> Result<(), DbErr> {
    if m.get_database_backend() != sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
        return Ok(());
    }
    for (column, len) in [
        (Settlements::Asset, address),
        (Settlements::Payer, address),
        (Settlements::PayTo, address),
        (Settlements::Signer, address),
        (Settlements::TxHash, tx),
    ] {
        let nullable = matches!(column, Settlements::Signer | Settlements::TxHash);
        let mut def = ColumnDef::new(column);
        def.string_len(len);
        if nullable {
            def.null();
        } else {
            def.not_null();
        }
        m.alter_table(
            Table::alter()
                .table(Settlements::Table)
                .modify_column(def)
                .to_owned(),
        )
        .await?;
    }
    m.alter_table(
        Table::alter()
            .table(X402MetricsDaily::Table)
            .modify_column(
                ColumnDef::new(X402MetricsDaily::Asset)
                    .string_len(address)
                    .not_null(),
            )
            .to_owned(),
    )
    .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        widths(m, 64, 128).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        widths(m, 42, 66).await
    }
}
