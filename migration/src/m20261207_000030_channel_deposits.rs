//! A channel deposit's voucher is accepted when the deposit's ledger row is claimed, before the
//! deposit is sent, and stands or falls with that row: `deposit_row` names it while the deposit
//! is not mined, and `prior_accepted`/`prior_signature` keep the voucher accepted before it,
//! which the channel returns to if the deposit finally fails.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Channels {
    Table,
    DepositRow,
    PriorAccepted,
    PriorSignature,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        for column in [
            ColumnDef::new(Channels::DepositRow)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(Channels::PriorAccepted)
                .string_len(39)
                .null()
                .to_owned(),
            ColumnDef::new(Channels::PriorSignature)
                .text()
                .null()
                .to_owned(),
        ] {
            let mut column = column;
            m.alter_table(
                Table::alter()
                    .table(Channels::Table)
                    .add_column(&mut column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            Channels::DepositRow,
            Channels::PriorAccepted,
            Channels::PriorSignature,
        ] {
            m.alter_table(
                Table::alter()
                    .table(Channels::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
