//! The shared state of client rate limits on PostgreSQL, so that a fleet of instances holds a
//! key (or an account) to its limit together: one row per limited subject, its GCRA
//! "theoretical arrival time" in microseconds since the Unix epoch. SQLite serves one instance,
//! which keeps its buckets in memory; the table exists there too, unused.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum RateLimitStates {
    Table,
    Subject,
    Tat,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(RateLimitStates::Table)
                .col(
                    ColumnDef::new(RateLimitStates::Subject)
                        .string_len(100)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(RateLimitStates::Tat)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(RateLimitStates::Table).to_owned())
            .await
    }
}
