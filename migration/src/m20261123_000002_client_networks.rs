//! Client keys may be limited to some networks: `clients.networks`, comma-separated v1 network
//! names; NULL = every network the facilitator serves.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Clients {
    Table,
    Networks,
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
                    .add_column(ColumnDef::new(Clients::Networks).string_len(1024).null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .drop_column(Clients::Networks)
                    .to_owned(),
            )
            .await
    }
}
