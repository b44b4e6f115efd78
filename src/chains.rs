//! Which chain a `networks.<key>` entry of the configuration is, and what it accepts.
//!
//! A key naming a built-in network (`base_sepolia`) takes the table's chain id and default
//! token; any other key is a chain known from configuration alone: it needs `chain_id`, gets
//! the CAIP-2 id `eip155:<chain_id>`, and accepts the `assets` it lists. Either way the chain
//! is then found by every lookup of `x402::network`, so `/supported`, `/networks`, `/status`,
//! the asset registry and the metrics treat both alike.

use std::collections::HashMap;

use alloy_primitives::{Address, U256};
use facilitator_actors::facilitator::SmartWalletPolicy;
use facilitator_actors::registry::NewAsset;
use x402::network::{self, ChainSpec, Network};

use crate::config::{ConfigError, NetworkSettings};

/// A configured network, resolved.
#[derive(Debug)]
pub struct ResolvedNetwork {
    pub info: &'static Network,
    /// The token the network's entry names as its USDC (the default one, or the first asset).
    pub usdc: Address,
    pub assets: Vec<NewAsset>,
    pub smart_wallets: SmartWalletPolicy,
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Network {
        network: key.to_owned(),
        message: message.into(),
    }
}

fn parse_address(key: &str, what: &str, s: &str) -> Result<Address, ConfigError> {
    s.trim()
        .parse()
        .map_err(|_| invalid(key, format!("{what}: `{s}` is not an address")))
}

/// The chain a `networks.<key>` entry stands for (registered with `x402::network` when the
/// table lacks it).
pub fn chain_of(key: &str, ns: &NetworkSettings) -> Result<&'static Network, ConfigError> {
    let v1 = ns.v1_name.clone().unwrap_or_else(|| key.replace('_', "-"));
    let builtin = network::KNOWN_NETWORKS.iter().find(|n| n.v1_name == v1);
    match (builtin, ns.chain_id) {
        (Some(n), Some(id)) if id != n.chain_id => Err(invalid(
            key,
            format!(
                "chain_id {id}: `{v1}` is the built-in network with chain id {}",
                n.chain_id
            ),
        )),
        (Some(n), _) => Ok(n),
        (None, Some(chain_id)) => network::register(&ChainSpec {
            v1_name: v1,
            chain_id,
        })
        .map_err(|e| invalid(key, e.to_string())),
        (None, None) => Err(ConfigError::UnknownNetwork(format!(
            "{key} (not a built-in network: give its chain_id to serve it from configuration)"
        ))),
    }
}

/// The economic floor of each token of a resolved network (`min_amount`): an asset's own, else,
/// for the network's default token (`usdc`), the network's. Tokens without one take anything
/// above 0.
pub fn min_amounts(
    key: &str,
    usdc: Address,
    ns: &NetworkSettings,
) -> Result<HashMap<Address, U256>, ConfigError> {
    let mut floors = HashMap::new();
    if let Some(min) = ns.min_amount {
        floors.insert(usdc, min.0);
    }
    for a in &ns.assets {
        if let Some(min) = a.min_amount {
            floors.insert(parse_address(key, "asset", &a.address)?, min.0);
        }
    }
    Ok(floors)
}

/// The network of `key`, its tokens and its smart-wallet policy.
pub fn resolve(key: &str, ns: &NetworkSettings) -> Result<ResolvedNetwork, ConfigError> {
    let info = chain_of(key, ns)?;
    let mut assets = Vec::new();
    match (info.usdc, &ns.usdc_address) {
        (Some(default), over) => {
            let address = match over {
                Some(a) => parse_address(key, "usdc_address", a)?,
                None => default.address,
            };
            assets.push(NewAsset {
                network: info.v1_name.to_owned(),
                address,
                symbol: default.symbol.to_owned(),
                decimals: default.decimals,
                eip712_name: Some(default.eip712_name.to_owned()),
                eip712_version: Some(default.eip712_version.to_owned()),
                active: true,
            });
        }
        (None, Some(_)) => {
            return Err(invalid(
                key,
                "usdc_address: this network has no default token; list it under `assets` \
                 (address, decimals, eip712_name, eip712_version)",
            ))
        }
        (None, None) => {}
    }
    for a in &ns.assets {
        let address = parse_address(key, "asset", &a.address)?;
        let symbol = a
            .symbol
            .clone()
            .or_else(|| a.eip712_name.clone())
            .unwrap_or_else(|| "TOKEN".into());
        assets.push(NewAsset {
            network: info.v1_name.to_owned(),
            address,
            symbol,
            decimals: a.decimals,
            eip712_name: a.eip712_name.clone(),
            eip712_version: a.eip712_version.clone(),
            active: true,
        });
    }
    let usdc = assets.first().map(|a| a.address).ok_or_else(|| {
        invalid(
            key,
            "no token to accept: list one under `assets` (address, decimals, eip712_name, \
             eip712_version)",
        )
    })?;
    let allowed_factories = ns
        .erc6492_allowed_factories
        .0
        .iter()
        .map(|f| parse_address(key, "erc6492_allowed_factories", f))
        .collect::<Result<_, _>>()?;
    let multicall3 = match &ns.multicall3_address {
        Some(a) => parse_address(key, "multicall3_address", a)?,
        None => SmartWalletPolicy::default().multicall3,
    };
    Ok(ResolvedNetwork {
        info,
        usdc,
        assets,
        smart_wallets: SmartWalletPolicy {
            allowed_factories,
            multicall3,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(v: serde_json::Value) -> NetworkSettings {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_chain_the_table_lacks_needs_its_chain_id_and_an_asset() {
        let asset = serde_json::json!([{ "address": "0x1111111111111111111111111111111111111111",
            "decimals": 6, "eip712_name": "USDC", "eip712_version": "2" }]);
        let r = resolve(
            "config_only_chain",
            &settings(serde_json::json!({ "chain_id": 990_101, "assets": asset })),
        )
        .unwrap();
        assert_eq!(r.info.v1_name, "config-only-chain");
        assert_eq!(r.info.caip2, "eip155:990101");
        assert_eq!(r.assets[0].symbol, "USDC");
        assert!(r.smart_wallets.allowed_factories.is_empty());
        assert!(matches!(
            resolve("nowhere_chain", &settings(serde_json::json!({}))),
            Err(ConfigError::UnknownNetwork(_))
        ));
        let no_asset = resolve(
            "assetless",
            &settings(serde_json::json!({ "chain_id": 990_102 })),
        );
        assert!(no_asset.unwrap_err().to_string().contains("no token"));
        let wrong_id = resolve("base", &settings(serde_json::json!({ "chain_id": 1 })));
        assert!(wrong_id.unwrap_err().to_string().contains("8453"));
    }

    #[test]
    fn min_amounts_are_the_default_tokens_and_each_assets_own() {
        let other = "0x1111111111111111111111111111111111111111";
        let ns = settings(serde_json::json!({ "min_amount": "1000", "assets": [
            { "address": other, "decimals": 18, "min_amount": 10_000_000_000u64 },
            { "address": "0x2222222222222222222222222222222222222222", "decimals": 6 },
        ] }));
        let r = resolve("base", &ns).unwrap();
        let floors = min_amounts("base", r.usdc, &ns).unwrap();
        assert_eq!(floors[&r.usdc], U256::from(1000));
        assert_eq!(
            floors[&other.parse::<Address>().unwrap()],
            U256::from(10_000_000_000u64)
        );
        assert_eq!(
            floors.len(),
            2,
            "a token without one takes anything above 0"
        );
        assert!(
            min_amounts("base", r.usdc, &settings(serde_json::json!({})))
                .unwrap()
                .is_empty()
        );
        for bad in [
            serde_json::json!({ "min_amount": "-1" }),
            serde_json::json!({ "min_amount": "1e6" }),
        ] {
            assert!(serde_json::from_value::<NetworkSettings>(bad).is_err());
        }
    }

    #[test]
    fn factories_are_a_list_or_a_comma_string() {
        let r = resolve(
            "base",
            &settings(serde_json::json!({ "erc6492_allowed_factories":
                "0x1111111111111111111111111111111111111111, 0x2222222222222222222222222222222222222222" })),
        )
        .unwrap();
        assert_eq!(r.smart_wallets.allowed_factories.len(), 2);
        assert_eq!(
            r.usdc,
            network::by_v1_name("base").unwrap().usdc.unwrap().address
        );
        let bad = resolve(
            "base",
            &settings(serde_json::json!({ "erc6492_allowed_factories": ["nope"] })),
        );
        assert!(bad.is_err());
    }
}
