//! Throttling counters that must survive a restart and be shared by instances (login failures
//! per account and per client IP, signups and token refreshes per IP): one row per
//! (scope, subject), a fixed window of attempts, and a lock with exponential backoff.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Throttles {
    Table,
    Id,
    Scope,
    Subject,
    Attempts,
    Locks,
    WindowStartedAt,
    LockedUntil,
    UpdatedAt,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Throttles::Table)
                .col(
                    ColumnDef::new(Throttles::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new(Throttles::Scope).string_len(32).not_null())
                .col(
                    ColumnDef::new(Throttles::Subject)
                        .string_len(300)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Throttles::Attempts)
                        .integer()
                        .not_null()
                        .default(0),
                )
                .col(
                    ColumnDef::new(Throttles::Locks)
                        .integer()
                        .not_null()
                        .default(0),
                )
                .col(
                    ColumnDef::new(Throttles::WindowStartedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Throttles::LockedUntil)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(
                    ColumnDef::new(Throttles::UpdatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_throttles_scope_subject")
                .table(Throttles::Table)
                .col(Throttles::Scope)
                .col(Throttles::Subject)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Throttles::Table).to_owned())
            .await
    }
}
