//! `RegistryActor`: networks (from configuration), assets (configuration + admin API) and
//! merchants' resources (the discovery registry).
//!
//! Networks are fixed at start and read lock-free; their live chain health comes from each
//! network's `ChainAccess`. Assets are read on every verify, so the
//! actor keeps an `Arc<DashMap>` of the active ones warm and is its only writer.

use std::sync::Arc;

use actix::prelude::*;
use alloy_primitives::Address;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use entities::{asset, resource};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde::Serialize;
use serde_json::Value;

use crate::auth::accounts;
use crate::chain::{ChainAccess, NetworkHealth};
use crate::error::{conflict_on_unique, ServiceError, ServiceResult};

/// A network this process serves (it has an RPC URL).
#[derive(Debug, Clone)]
pub struct NetworkEntry {
    pub info: &'static x402::network::Network,
    /// USDC here (the table's, or a local deployment standing in for it).
    pub usdc: Address,
    /// The addresses that pay gas for settlements on this network.
    pub signers: Vec<Address>,
}

impl NetworkEntry {
    pub fn fee_payer(&self) -> String {
        self.signers
            .first()
            .map(|a| a.to_checksum(None))
            .unwrap_or_default()
    }
}

/// An asset (token) as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Asset)]
pub struct AssetView {
    #[schema(example = 1)]
    pub id: i64,
    #[schema(example = "base-sepolia")]
    pub network: String,
    /// The token contract.
    #[schema(example = "0x036CbD53842c5426634e7929541eC2318f3dCF7e")]
    pub asset: String,
    #[schema(example = "USDC")]
    pub symbol: String,
    #[schema(example = 6)]
    pub decimals: i16,
    pub active: bool,
    /// EIP-712 domain name, when registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eip712_name: Option<String>,
    /// EIP-712 domain version, when registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eip712_version: Option<String>,
}

impl From<asset::Model> for AssetView {
    fn from(a: asset::Model) -> Self {
        Self {
            id: a.id,
            network: a.network,
            asset: a.address,
            symbol: a.symbol,
            decimals: a.decimals,
            active: a.active,
            eip712_name: a.eip712_name,
            eip712_version: a.eip712_version,
        }
    }
}

/// An asset to register.
#[derive(Debug, Clone)]
pub struct NewAsset {
    pub network: String,
    pub address: Address,
    pub symbol: String,
    pub decimals: u8,
    pub eip712_name: Option<String>,
    pub eip712_version: Option<String>,
    pub active: bool,
}

/// A resource as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Resource)]
pub struct ResourceView {
    pub id: i64,
    #[schema(example = "/api/premium-data")]
    pub resource: String,
    #[serde(rename = "type")]
    #[schema(example = "http")]
    pub kind: String,
    pub x402_version: i16,
    /// The payment requirements as registered (1 to 32, each with `scheme`, `network` and
    /// `payTo`).
    #[schema(value_type = Vec<Object>)]
    pub accepts: Value,
    /// A JSON object.
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
}

impl From<resource::Model> for ResourceView {
    fn from(r: resource::Model) -> Self {
        Self {
            id: r.id,
            resource: r.resource,
            kind: r.kind,
            x402_version: r.x402_version,
            accepts: r.accepts,
            metadata: r.metadata,
            created_at: r.created_at,
            last_updated: r.updated_at,
        }
    }
}

/// The fields of an `accepts` entry that x402 clients read must have their JSON types (the API
/// documents them as `PaymentRequirements`, src/routes/x402.rs); the entry is stored as given,
/// other fields included.
fn check_requirement_types(item: &Value) -> ServiceResult<()> {
    let bad = |m: String| Err(ServiceError::InvalidInput(format!("accepts: {m}")));
    let optional = |v: &Value, name: &str, ok: fn(&Value) -> bool| {
        v.get(name).is_none_or(|f| f.is_null() || ok(f))
    };
    if !item.get("asset").is_some_and(Value::is_string) {
        return bad("each entry needs asset, a string".into());
    }
    for name in [
        "maxAmountRequired",
        "amount",
        "resource",
        "description",
        "mimeType",
    ] {
        if !optional(item, name, Value::is_string) {
            return bad(format!("{name} must be a string"));
        }
    }
    if !optional(item, "maxTimeoutSeconds", Value::is_u64) {
        return bad("maxTimeoutSeconds must be a whole number of seconds".into());
    }
    if !optional(item, "extra", Value::is_object) {
        return bad("extra must be an object".into());
    }
    if let Some(extra) = item.get("extra").filter(|e| e.is_object()) {
        for name in ["name", "version"] {
            if !optional(extra, name, Value::is_string) {
                return bad(format!("extra.{name} must be a string"));
            }
        }
    }
    Ok(())
}

/// A validated resource body (create or update).
#[derive(Debug, Clone)]
pub struct ResourceInput {
    pub resource: String,
    pub kind: String,
    pub x402_version: i16,
    pub accepts: Value,
    pub metadata: Value,
}

impl ResourceInput {
    pub fn parse(
        resource: &str,
        kind: Option<&str>,
        x402_version: i64,
        accepts: Value,
        metadata: Option<Value>,
    ) -> ServiceResult<Self> {
        let bad = |m: &str| Err(ServiceError::InvalidInput(m.to_owned()));
        let resource = resource.trim();
        if resource.is_empty() || resource.len() > 2048 {
            return bad("resource must be 1 to 2048 characters");
        }
        let kind = kind.unwrap_or("http").trim();
        if kind.is_empty() || kind.len() > 32 {
            return bad("type must be 1 to 32 characters");
        }
        if !(1..=2).contains(&x402_version) {
            return bad("x402Version must be 1 or 2");
        }
        let Some(items) = accepts.as_array() else {
            return bad("accepts must be an array of payment requirements");
        };
        if items.is_empty() || items.len() > 32 {
            return bad("accepts must hold 1 to 32 payment requirements");
        }
        for item in items {
            let scheme = item.get("scheme").and_then(Value::as_str);
            let network = item.get("network").and_then(Value::as_str);
            let pay_to = item.get("payTo").and_then(Value::as_str);
            match (scheme, network, pay_to) {
                (Some(_), Some(network), Some(pay_to)) => {
                    if x402::network::parse_network(network).is_none() {
                        return Err(ServiceError::InvalidInput(format!(
                            "accepts: unsupported network `{network}`"
                        )));
                    }
                    if pay_to.parse::<Address>().is_err() {
                        return bad("accepts: payTo must be an address");
                    }
                }
                _ => return bad("accepts: each entry needs scheme, network and payTo"),
            }
            check_requirement_types(item)?;
        }
        let metadata = metadata.unwrap_or_else(|| Value::Object(Default::default()));
        if !metadata.is_object() {
            return bad("metadata must be an object");
        }
        Ok(Self {
            resource: resource.to_owned(),
            kind: kind.to_owned(),
            x402_version: x402_version as i16,
            accepts,
            metadata,
        })
    }
}

pub struct ResourcePage {
    pub items: Vec<ResourceView>,
    pub total: u64,
}

/// Key of the asset cache: (v1 network name, lower-case address).
type AssetKey = (String, Address);

pub struct RegistryActor {
    db: DatabaseConnection,
    assets: Arc<DashMap<AssetKey, AssetView>>,
    /// Resources an account may register.
    max_resources: u64,
}

impl Actor for RegistryActor {
    type Context = Context<Self>;
}

#[derive(Clone)]
pub struct RegistryHandle {
    addr: Addr<RegistryActor>,
    networks: Arc<Vec<NetworkEntry>>,
    /// Each served network's chain access, whose health `/status` shows.
    chains: Arc<DashMap<&'static str, ChainAccess>>,
    assets: Arc<DashMap<AssetKey, AssetView>>,
}

impl RegistryHandle {
    /// Seed the configured assets (upsert) and start the actor; an account may register up to
    /// `max_resources` resources.
    pub async fn start(
        db: DatabaseConnection,
        networks: Vec<NetworkEntry>,
        configured_assets: Vec<NewAsset>,
        max_resources: u64,
    ) -> ServiceResult<Self> {
        for new in configured_assets {
            upsert_asset(&db, new).await?;
        }
        let assets = Arc::new(DashMap::new());
        for row in asset::Entity::find()
            .filter(asset::Column::Active.eq(true))
            .all(&db)
            .await?
        {
            if let Ok(address) = row.address.parse::<Address>() {
                assets.insert((row.network.clone(), address), AssetView::from(row));
            }
        }
        let actor = RegistryActor {
            db,
            assets: assets.clone(),
            max_resources,
        };
        Ok(Self {
            addr: actor.start(),
            networks: Arc::new(networks),
            chains: Arc::new(DashMap::new()),
            assets,
        })
    }

    pub fn networks(&self) -> &[NetworkEntry] {
        &self.networks
    }

    /// A served network by v1 name or CAIP-2 id.
    pub fn network(&self, name: &str) -> Option<&NetworkEntry> {
        let info = x402::network::parse_network(name)?;
        self.networks
            .iter()
            .find(|n| n.info.chain_id == info.chain_id)
    }

    /// The network's chain access right now (endpoints, head, status); `down` without one.
    pub fn chain_health(&self, network: &'static str) -> NetworkHealth {
        self.chains
            .get(network)
            .map(|c| c.health())
            .unwrap_or_else(NetworkHealth::unknown)
    }

    pub fn attach_chain(&self, network: &'static str, chain: ChainAccess) {
        self.chains.insert(network, chain);
    }

    /// An active asset of a served network (the verify hot path).
    pub fn asset(&self, network: &str, address: Address) -> Option<AssetView> {
        self.assets
            .get(&(network.to_owned(), address))
            .map(|a| a.clone())
    }

    /// Active assets of one network.
    pub fn assets_of(&self, network: &str) -> Vec<AssetView> {
        let mut v: Vec<AssetView> = self
            .assets
            .iter()
            .filter(|e| e.key().0 == network)
            .map(|e| e.value().clone())
            .collect();
        v.sort_by_key(|a| a.id);
        v
    }

    pub async fn list_assets(&self) -> ServiceResult<Vec<AssetView>> {
        let mut v: Vec<AssetView> = self.assets.iter().map(|e| e.value().clone()).collect();
        v.sort_by_key(|a| a.id);
        Ok(v)
    }

    pub async fn register_asset(&self, new: NewAsset) -> ServiceResult<AssetView> {
        if x402::network::by_v1_name(&new.network).is_none() {
            return Err(ServiceError::InvalidInput("unsupported network".into()));
        }
        let symbol = new.symbol.trim();
        if symbol.is_empty() || symbol.len() > 32 {
            return Err(ServiceError::InvalidInput(
                "symbol must be 1 to 32 characters".into(),
            ));
        }
        if new.decimals > 36 {
            return Err(ServiceError::InvalidInput(
                "decimals must be 0 to 36".into(),
            ));
        }
        self.addr.send(RegisterAsset(new)).await?
    }

    pub async fn create_resource(
        &self,
        user_id: i64,
        input: ResourceInput,
    ) -> ServiceResult<ResourceView> {
        self.addr.send(CreateResource { user_id, input }).await?
    }

    pub async fn update_resource(
        &self,
        user_id: i64,
        id: i64,
        input: ResourceInput,
    ) -> ServiceResult<ResourceView> {
        self.addr
            .send(UpdateResource { user_id, id, input })
            .await?
    }

    /// Resources, newest first; of one user when `user_id` is given, of one type when `kind`.
    pub async fn list_resources(
        &self,
        user_id: Option<i64>,
        kind: Option<String>,
        offset: u64,
        limit: u64,
    ) -> ServiceResult<ResourcePage> {
        self.addr
            .send(ListResources {
                user_id,
                kind,
                offset,
                limit,
            })
            .await?
    }
}

async fn upsert_asset(db: &DatabaseConnection, new: NewAsset) -> ServiceResult<asset::Model> {
    let address = new.address.to_checksum(None);
    let now = Utc::now();
    let existing = asset::Entity::find()
        .filter(asset::Column::Network.eq(&new.network))
        .filter(asset::Column::Address.eq(&address))
        .one(db)
        .await?;
    let row = match existing {
        Some(row) => {
            let mut am: asset::ActiveModel = row.into();
            am.symbol = Set(new.symbol);
            am.decimals = Set(new.decimals as i16);
            am.eip712_name = Set(new.eip712_name);
            am.eip712_version = Set(new.eip712_version);
            am.active = Set(new.active);
            am.updated_at = Set(now);
            am.update(db).await?
        }
        None => new_asset_row(new).insert(db).await?,
    };
    Ok(row)
}

fn new_asset_row(new: NewAsset) -> asset::ActiveModel {
    let now = Utc::now();
    asset::ActiveModel {
        network: Set(new.network),
        address: Set(new.address.to_checksum(None)),
        symbol: Set(new.symbol.trim().to_owned()),
        decimals: Set(new.decimals as i16),
        eip712_name: Set(new.eip712_name),
        eip712_version: Set(new.eip712_version),
        active: Set(new.active),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
}

#[derive(Message)]
#[rtype(result = "ServiceResult<AssetView>")]
struct RegisterAsset(NewAsset);

impl Handler<RegisterAsset> for RegistryActor {
    type Result = ResponseActFuture<Self, ServiceResult<AssetView>>;

    fn handle(&mut self, msg: RegisterAsset, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let new = msg.0;
        let address = new.address;
        let work = async move {
            let inserted = new_asset_row(new).insert(&db).await;
            conflict_on_unique(inserted, "this asset is already registered on this network")
                .map(Into::into)
        };
        Box::pin(
            work.into_actor(self)
                .map(move |res: ServiceResult<AssetView>, act, _| {
                    if let Ok(view) = &res {
                        if view.active {
                            act.assets
                                .insert((view.network.clone(), address), view.clone());
                        }
                    }
                    res
                }),
        )
    }
}

#[derive(Message)]
#[rtype(result = "ServiceResult<ResourceView>")]
struct CreateResource {
    user_id: i64,
    input: ResourceInput,
}

impl Handler<CreateResource> for RegistryActor {
    type Result = ResponseFuture<ServiceResult<ResourceView>>;

    fn handle(&mut self, msg: CreateResource, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let max_resources = self.max_resources;
        Box::pin(async move {
            let txn = accounts::begin_within_cap(
                &db,
                msg.user_id,
                accounts::resources_of(msg.user_id),
                max_resources,
                "resources",
            )
            .await?;
            let now = Utc::now();
            let i = msg.input;
            let inserted = resource::ActiveModel {
                user_id: Set(msg.user_id),
                resource: Set(i.resource),
                kind: Set(i.kind),
                x402_version: Set(i.x402_version),
                accepts: Set(i.accepts),
                metadata: Set(i.metadata),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            }
            .insert(&txn)
            .await;
            let row = conflict_on_unique(inserted, "you have already registered this resource")?;
            txn.commit().await?;
            Ok(row.into())
        })
    }
}

#[derive(Message)]
#[rtype(result = "ServiceResult<ResourceView>")]
struct UpdateResource {
    user_id: i64,
    id: i64,
    input: ResourceInput,
}

impl Handler<UpdateResource> for RegistryActor {
    type Result = ResponseFuture<ServiceResult<ResourceView>>;

    fn handle(&mut self, msg: UpdateResource, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        Box::pin(async move {
            // Someone else's resource is indistinguishable from a missing one.
            let row = resource::Entity::find_by_id(msg.id)
                .filter(resource::Column::UserId.eq(msg.user_id))
                .one(&db)
                .await?
                .ok_or(ServiceError::NotFound("resource"))?;
            let i = msg.input;
            let mut am: resource::ActiveModel = row.into();
            am.resource = Set(i.resource);
            am.kind = Set(i.kind);
            am.x402_version = Set(i.x402_version);
            am.accepts = Set(i.accepts);
            am.metadata = Set(i.metadata);
            am.updated_at = Set(Utc::now());
            conflict_on_unique(
                am.update(&db).await,
                "you have already registered this resource",
            )
            .map(Into::into)
        })
    }
}

#[derive(Message)]
#[rtype(result = "ServiceResult<ResourcePage>")]
struct ListResources {
    user_id: Option<i64>,
    kind: Option<String>,
    offset: u64,
    limit: u64,
}

impl Handler<ListResources> for RegistryActor {
    type Result = ResponseFuture<ServiceResult<ResourcePage>>;

    fn handle(&mut self, msg: ListResources, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        Box::pin(async move {
            let mut query = resource::Entity::find();
            if let Some(user_id) = msg.user_id {
                query = query.filter(resource::Column::UserId.eq(user_id));
            }
            if let Some(kind) = msg.kind {
                query = query.filter(resource::Column::Kind.eq(kind));
            }
            let total = query.clone().count(&db).await?;
            let rows = query
                .order_by_desc(resource::Column::UpdatedAt)
                .order_by_desc(resource::Column::Id)
                .offset(msg.offset)
                .limit(msg.limit)
                .all(&db)
                .await?;
            Ok(ResourcePage {
                items: rows.into_iter().map(ResourceView::from).collect(),
                total,
            })
        })
    }
}
