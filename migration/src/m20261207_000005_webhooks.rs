//! Webhooks: a user's endpoints (`webhooks`), the outbox of events written in the same
//! transaction as the ledger change that causes each (`webhook_events`, with a snapshot of the
//! settlement as `GET /settlements/{tx}` shows it at that moment), and one delivery per
//! (endpoint, event), claimed by one instance at a time under a lease (`webhook_deliveries`).

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Id,
    UserId,
    Url,
    /// The events wanted, comma-separated and comma-wrapped (`,settlement.mined,`): matched
    /// with `LIKE` inside the ledger's transaction.
    Events,
    /// JSON arrays, or null: no filter.
    ClientIds,
    ResourceIds,
    Secret,
    Enabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookEvents {
    Table,
    Id,
    EventId,
    EventType,
    UserId,
    ClientId,
    SettlementId,
    DedupKey,
    Network,
    Asset,
    Payer,
    AuthNonce,
    PayTo,
    Amount,
    Status,
    TxHash,
    BlockNumber,
    GasUsed,
    ErrorReason,
    ConfirmedAt,
    SettlementCreatedAt,
    Data,
    FannedOut,
    CreatedAt,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    WebhookId,
    EventRowId,
    Status,
    Attempts,
    NextAttemptAt,
    ClaimedBy,
    LeaseUntil,
    LastStatusCode,
    LastError,
    DeliveredAt,
    CreatedAt,
    UpdatedAt,
}

fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn ts_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

fn pk(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

fn text_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).text().null().to_owned()
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Webhooks::Table)
                .col(pk(Webhooks::Id))
                .col(ColumnDef::new(Webhooks::UserId).big_integer().not_null())
                .col(ColumnDef::new(Webhooks::Url).string_len(2048).not_null())
                .col(ColumnDef::new(Webhooks::Events).string_len(512).not_null())
                .col(text_null(Webhooks::ClientIds))
                .col(text_null(Webhooks::ResourceIds))
                .col(ColumnDef::new(Webhooks::Secret).string_len(128).not_null())
                .col(
                    ColumnDef::new(Webhooks::Enabled)
                        .boolean()
                        .not_null()
                        .default(true),
                )
                .col(ts(Webhooks::CreatedAt))
                .col(ts(Webhooks::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Webhooks::Table, Webhooks::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_webhooks_user")
                .table(Webhooks::Table)
                .col(Webhooks::UserId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(WebhookEvents::Table)
                .col(pk(WebhookEvents::Id))
                .col(
                    ColumnDef::new(WebhookEvents::EventId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WebhookEvents::EventType)
                        .string_len(32)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WebhookEvents::UserId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WebhookEvents::ClientId)
                        .string_len(64)
                        .null(),
                )
                .col(
                    ColumnDef::new(WebhookEvents::SettlementId)
                        .big_integer()
                        .null(),
                )
                .col(
                    ColumnDef::new(WebhookEvents::DedupKey)
                        .string_len(200)
                        .null(),
                )
                .col(text_null(WebhookEvents::Network))
                .col(text_null(WebhookEvents::Asset))
                .col(text_null(WebhookEvents::Payer))
                .col(text_null(WebhookEvents::AuthNonce))
                .col(text_null(WebhookEvents::PayTo))
                .col(text_null(WebhookEvents::Amount))
                .col(text_null(WebhookEvents::Status))
                .col(text_null(WebhookEvents::TxHash))
                .col(
                    ColumnDef::new(WebhookEvents::BlockNumber)
                        .big_integer()
                        .null(),
                )
                .col(ColumnDef::new(WebhookEvents::GasUsed).big_integer().null())
                .col(text_null(WebhookEvents::ErrorReason))
                .col(ts_null(WebhookEvents::ConfirmedAt))
                .col(ts_null(WebhookEvents::SettlementCreatedAt))
                .col(text_null(WebhookEvents::Data))
                .col(
                    ColumnDef::new(WebhookEvents::FannedOut)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(ts(WebhookEvents::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(WebhookEvents::Table, WebhookEvents::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_webhook_events_event_id")
                .table(WebhookEvents::Table)
                .col(WebhookEvents::EventId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_webhook_events_dedup_key")
                .table(WebhookEvents::Table)
                .col(WebhookEvents::DedupKey)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_webhook_events_fan_out")
                .table(WebhookEvents::Table)
                .col(WebhookEvents::FannedOut)
                .col(WebhookEvents::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_webhook_events_settlement")
                .table(WebhookEvents::Table)
                .col(WebhookEvents::SettlementId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(WebhookDeliveries::Table)
                .col(pk(WebhookDeliveries::Id))
                .col(
                    ColumnDef::new(WebhookDeliveries::WebhookId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WebhookDeliveries::EventRowId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WebhookDeliveries::Status)
                        .string_len(16)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WebhookDeliveries::Attempts)
                        .integer()
                        .not_null()
                        .default(0),
                )
                .col(ts(WebhookDeliveries::NextAttemptAt))
                .col(
                    ColumnDef::new(WebhookDeliveries::ClaimedBy)
                        .string_len(64)
                        .null(),
                )
                .col(ts_null(WebhookDeliveries::LeaseUntil))
                .col(
                    ColumnDef::new(WebhookDeliveries::LastStatusCode)
                        .integer()
                        .null(),
                )
                .col(text_null(WebhookDeliveries::LastError))
                .col(ts_null(WebhookDeliveries::DeliveredAt))
                .col(ts(WebhookDeliveries::CreatedAt))
                .col(ts(WebhookDeliveries::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(WebhookDeliveries::Table, WebhookDeliveries::WebhookId)
                        .to(Webhooks::Table, Webhooks::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(WebhookDeliveries::Table, WebhookDeliveries::EventRowId)
                        .to(WebhookEvents::Table, WebhookEvents::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_webhook_deliveries_webhook_event")
                .table(WebhookDeliveries::Table)
                .col(WebhookDeliveries::WebhookId)
                .col(WebhookDeliveries::EventRowId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_webhook_deliveries_due")
                .table(WebhookDeliveries::Table)
                .col(WebhookDeliveries::Status)
                .col(WebhookDeliveries::NextAttemptAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(WebhookDeliveries::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(WebhookEvents::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Webhooks::Table).to_owned())
            .await
    }
}
