//! Many instances on one database: each instance has a
//! row in `instances` with a heartbeat, and each (network, signer key) is driven by at most one
//! live instance at a time, the holder of its row in `signer_leases`.
//!
//! A lease is taken when free or expired (the insert, or a conditional update that bumps the
//! epoch, is the race-free point), renewed by heartbeat, and released on a clean stop or when
//! the holder has more than its share. Every ledger write that precedes a broadcast is fenced by
//! (holder, epoch) (`ledger::Fence`), so a paused old holder cannot send with a nonce the new
//! holder owns. PostgreSQL is the shared truth; there is no consensus of our own. Clocks of the
//! instances must agree to well within the lease TTL (NTP).

use std::time::Duration;

use alloy::primitives::Address;
use chrono::{DateTime, Utc};
use entities::{instance, signer_lease};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect,
};

#[derive(Clone)]
pub struct Fleet {
    db: DatabaseConnection,
    id: std::sync::Arc<str>,
    ttl: Duration,
}

fn at(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn ago(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Fleet {
    /// Register this instance (a fresh id per start).
    pub async fn join(db: DatabaseConnection, ttl: Duration) -> Result<Self, DbErr> {
        let id = format!("inst_{}", uuid::Uuid::new_v4().simple());
        let now = Utc::now();
        instance::Entity::insert(instance::ActiveModel {
            id: Set(id.clone()),
            host: Set(hostname()),
            pid: Set(std::process::id() as i32),
            started_at: Set(now),
            heartbeat_at: Set(now),
        })
        .exec_without_returning(&db)
        .await?;
        tracing::info!(instance = %id, "joined the fleet");
        Ok(Self {
            db,
            id: id.into(),
            ttl,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The holder name for fences.
    pub fn holder(&self) -> std::sync::Arc<str> {
        self.id.clone()
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub async fn heartbeat(&self) -> Result<(), DbErr> {
        instance::Entity::update_many()
            .col_expr(instance::Column::HeartbeatAt, Expr::value(Utc::now()))
            .filter(instance::Column::Id.eq(self.id.as_ref()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Ids of the instances whose heartbeat is within the TTL (this one included).
    pub async fn live_instances(&self) -> Result<Vec<String>, DbErr> {
        let rows: Vec<String> = instance::Entity::find()
            .select_only()
            .column(instance::Column::Id)
            .filter(instance::Column::HeartbeatAt.gt(ago(Utc::now(), self.ttl)))
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows)
    }

    /// Take the lease of (`network`, `signer`) if it is free or expired: the new epoch.
    pub async fn acquire(&self, network: &str, signer: Address) -> Result<Option<i64>, DbErr> {
        use signer_lease::{Column, Entity};
        let now = Utc::now();
        let signer = signer.to_checksum(None);
        let inserted = Entity::insert(signer_lease::ActiveModel {
            network: Set(network.to_owned()),
            signer: Set(signer.clone()),
            holder: Set(self.id.to_string()),
            epoch: Set(1),
            expires_at: Set(at(now, self.ttl)),
            renewed_at: Set(now),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::columns([Column::Network, Column::Signer])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        if inserted == 0 {
            let taken = Entity::update_many()
                .col_expr(Column::Holder, Expr::value(self.id.as_ref()))
                .col_expr(Column::Epoch, Expr::col(Column::Epoch).add(1))
                .col_expr(Column::ExpiresAt, Expr::value(at(now, self.ttl)))
                .col_expr(Column::RenewedAt, Expr::value(now))
                .filter(Column::Network.eq(network))
                .filter(Column::Signer.eq(&signer))
                .filter(Column::ExpiresAt.lte(now))
                .exec(&self.db)
                .await?;
            if taken.rows_affected == 0 {
                return Ok(None);
            }
        }
        // Ours until it expires: nobody else can change it meanwhile.
        let lease = Entity::find()
            .filter(Column::Network.eq(network))
            .filter(Column::Signer.eq(&signer))
            .filter(Column::Holder.eq(self.id.as_ref()))
            .one(&self.db)
            .await?;
        Ok(lease.map(|l| l.epoch))
    }

    /// Extend a lease still held at `epoch`; `false` = lost (expired and taken over).
    pub async fn renew(&self, network: &str, signer: Address, epoch: i64) -> Result<bool, DbErr> {
        use signer_lease::{Column, Entity};
        let now = Utc::now();
        let res = Entity::update_many()
            .col_expr(Column::ExpiresAt, Expr::value(at(now, self.ttl)))
            .col_expr(Column::RenewedAt, Expr::value(now))
            .filter(Column::Network.eq(network))
            .filter(Column::Signer.eq(signer.to_checksum(None)))
            .filter(Column::Holder.eq(self.id.as_ref()))
            .filter(Column::Epoch.eq(epoch))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Give a lease up now, so another instance can take it at once.
    pub async fn release(&self, network: &str, signer: Address, epoch: i64) -> Result<(), DbErr> {
        use signer_lease::{Column, Entity};
        Entity::update_many()
            .col_expr(Column::ExpiresAt, Expr::value(Utc::now()))
            .filter(Column::Network.eq(network))
            .filter(Column::Signer.eq(signer.to_checksum(None)))
            .filter(Column::Holder.eq(self.id.as_ref()))
            .filter(Column::Epoch.eq(epoch))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// A clean stop: every lease released and the instance gone, so that the others take
    /// over at once instead of after the TTL.
    pub async fn leave(&self) -> Result<(), DbErr> {
        use signer_lease::{Column, Entity};
        Entity::update_many()
            .col_expr(Column::ExpiresAt, Expr::value(Utc::now()))
            .filter(Column::Holder.eq(self.id.as_ref()))
            .exec(&self.db)
            .await?;
        instance::Entity::delete_many()
            .filter(instance::Column::Id.eq(self.id.as_ref()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Every instance row and every signer lease, as the database has them (the operator's
    /// view: `GET /admin/fleet`).
    pub async fn roster(&self) -> Result<(Vec<instance::Model>, Vec<signer_lease::Model>), DbErr> {
        use sea_orm::QueryOrder;
        let instances = instance::Entity::find()
            .order_by_asc(instance::Column::StartedAt)
            .all(&self.db)
            .await?;
        let leases = signer_lease::Entity::find()
            .order_by_asc(signer_lease::Column::Network)
            .order_by_asc(signer_lease::Column::Signer)
            .all(&self.db)
            .await?;
        Ok((instances, leases))
    }

    /// Instances dead for long: forgotten (their rows in the ledger stay theirs to adopt).
    pub async fn forget_dead(&self) -> Result<(), DbErr> {
        instance::Entity::delete_many()
            .filter(instance::Column::HeartbeatAt.lt(ago(Utc::now(), self.ttl * 20)))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

/// How many of `total` signers one of `live` instances should hold: an even split, rounded
/// up, so that every key is driven.
pub fn share(total: usize, live: usize) -> usize {
    total.div_ceil(live.max(1))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_evenly_and_all_are_driven() {
        assert_eq!(share(4, 1), 4);
        assert_eq!(share(4, 2), 2);
        assert_eq!(share(4, 3), 2);
        assert_eq!(share(1, 2), 1);
        assert_eq!(share(0, 2), 0);
        assert_eq!(share(3, 0), 3);
    }
}
