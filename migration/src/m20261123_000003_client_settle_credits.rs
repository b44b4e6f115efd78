//! Usage credits of a client key: `clients.settle_credits`, the settlements the key may still
//! make (each new authorization it settles uses one); NULL = unlimited.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Clients {
    Table,
    SettleCredits,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .add_column(ColumnDef::new(Clients::SettleCredits).big_integer().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .drop_column(Clients::SettleCredits)
                    .to_owned(),
            )
            .await
    }
}
