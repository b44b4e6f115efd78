//! Key controls (issue "One payment, one success", seeds 000/001): a client key can be paused
//! and resumed by its owner (`paused_at`), and the operator can give it its own rate limit
//! (`rate_limit_per_second`; NULL = the configured default).

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Clients {
    Table,
    PausedAt,
    RateLimitPerSecond,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        m.alter_table(
            Table::alter()
                .table(Clients::Table)
                .add_column(
                    ColumnDef::new(Clients::PausedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Clients::Table)
                .add_column(ColumnDef::new(Clients::RateLimitPerSecond).integer().null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [Clients::RateLimitPerSecond, Clients::PausedAt] {
            m.alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
