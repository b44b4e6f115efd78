//! Account limits, which bind every key of an account together: `users.settle_credits` (the
//! settlements the account's keys may still make together; NULL = unlimited),
//! `users.rate_limit_per_second` (requests per second of all its keys together; NULL = the
//! configured default, 0 = unlimited) and `users.gas_budget_wei` (the native fee, in wei, its
//! keys' settlement transactions may spend per UTC day, as a decimal string since a day's wei
//! outgrows 64 bits on some chains; NULL = unlimited).

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Users {
    Table,
    SettleCredits,
    RateLimitPerSecond,
    GasBudgetWei,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for column in [
            ColumnDef::new(Users::SettleCredits)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(Users::RateLimitPerSecond)
                .integer()
                .null()
                .to_owned(),
            ColumnDef::new(Users::GasBudgetWei)
                .string_len(80)
                .null()
                .to_owned(),
        ] {
            m.alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            Users::GasBudgetWei,
            Users::RateLimitPerSecond,
            Users::SettleCredits,
        ] {
            m.alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
