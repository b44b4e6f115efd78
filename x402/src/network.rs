//! The networks x402 knows: v1 names, CAIP-2 ids, chain ids, and each network's default
//! stablecoin (USDC where Circle issues it) with the EIP-712 domain name/version its EIP-3009
//! signatures are bound to.
//!
//! Two sources, one set of lookups: the built-in table (the x402 network list: the
//! specification's networks and `@x402/evm`'s `EVM_NETWORK_CHAIN_ID_MAP` / `DEFAULT_ASSETS`)
//! and the chains an operator configures at start-up ([`register`]). Configured entries are
//! leaked to `'static` (a handful per process, made once at start), so every caller keeps
//! holding `&'static Network` whichever source it came from.

use std::sync::RwLock;

use alloy_primitives::{address, Address};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    pub v1_name: &'static str,
    pub caip2: &'static str,
    pub chain_id: u64,
    /// The token a served network accepts without further configuration; `None` where the
    /// x402 list names no EIP-3009 token (configure `assets` there).
    pub usdc: Option<DefaultAsset>,
}

/// A network's default EIP-3009 token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultAsset {
    pub address: Address,
    pub symbol: &'static str,
    pub decimals: u8,
    /// EIP-712 domain name: "USDC" on some chains, "USD Coin" on others — the most common
    /// integration bug: the buyer signs over the name the requirements' `extra.name` gives, and a
    /// mismatch makes every signature recover to a stranger.
    pub eip712_name: &'static str,
    pub eip712_version: &'static str,
}

/// A network with Circle's USDC (6 decimals, EIP-712 version "2").
const fn usdc(
    v1_name: &'static str,
    caip2: &'static str,
    chain_id: u64,
    address: Address,
    eip712_name: &'static str,
) -> Network {
    token(v1_name, caip2, chain_id, address, "USDC", eip712_name, "2")
}

/// A network whose default token is another 6-decimal EIP-3009 stablecoin.
const fn token(
    v1_name: &'static str,
    caip2: &'static str,
    chain_id: u64,
    address: Address,
    symbol: &'static str,
    eip712_name: &'static str,
    eip712_version: &'static str,
) -> Network {
    Network {
        v1_name,
        caip2,
        chain_id,
        usdc: Some(DefaultAsset {
            address,
            symbol,
            decimals: 6,
            eip712_name,
            eip712_version,
        }),
    }
}

/// A network of the x402 list with no EIP-3009 token in it: served with configured assets.
const fn bare(v1_name: &'static str, caip2: &'static str, chain_id: u64) -> Network {
    Network {
        v1_name,
        caip2,
        chain_id,
        usdc: None,
    }
}

pub static KNOWN_NETWORKS: &[Network] = &[
    usdc(
        "base",
        "eip155:8453",
        8453,
        address!("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"),
        "USD Coin",
    ),
    usdc(
        "base-sepolia",
        "eip155:84532",
        84532,
        address!("0x036CbD53842c5426634e7929541eC2318f3dCF7e"),
        "USDC",
    ),
    usdc(
        "avalanche",
        "eip155:43114",
        43114,
        address!("0xB97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E"),
        "USD Coin",
    ),
    usdc(
        "avalanche-fuji",
        "eip155:43113",
        43113,
        address!("0x5425890298aed601595a70AB815c96711a31Bc65"),
        "USD Coin",
    ),
    usdc(
        "polygon",
        "eip155:137",
        137,
        address!("0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359"),
        "USD Coin",
    ),
    usdc(
        "polygon-amoy",
        "eip155:80002",
        80002,
        address!("0x41E94Eb019C0762f9Bfcf9Fb1E58725BfB0e7582"),
        "USDC",
    ),
    usdc(
        "arbitrum",
        "eip155:42161",
        42161,
        address!("0xaf88d065e77c8cC2239327C5EDb3A432268e5831"),
        "USD Coin",
    ),
    usdc(
        "arbitrum-sepolia",
        "eip155:421614",
        421614,
        address!("0x75faf114eafb1BDbe2F0316DF893fd58CE46AA4d"),
        "USD Coin",
    ),
    usdc(
        "sei",
        "eip155:1329",
        1329,
        address!("0xe15fC38F6D8c56aF07bbCBe3BAf5708A2Bf42392"),
        "USDC",
    ),
    usdc(
        "sei-testnet",
        "eip155:1328",
        1328,
        address!("0x4fCF1784B31630811181f670Aea7A7bEF803eaED"),
        "USDC",
    ),
    usdc(
        "iotex",
        "eip155:4689",
        4689,
        address!("0xcdf79194c6c285077a58da47641d4dbe51f63542"),
        "Bridged USDC",
    ),
    usdc(
        "celo",
        "eip155:42220",
        42220,
        address!("0xcebA9300f2b948710d2653dD7B07f33A8B32118C"),
        "USDC",
    ),
    // Grown from the x402 list (`@x402/evm` 2.27: EVM_NETWORK_CHAIN_ID_MAP, DEFAULT_ASSETS).
    usdc(
        "ethereum",
        "eip155:1",
        1,
        address!("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"),
        "USD Coin",
    ),
    usdc(
        "sepolia",
        "eip155:11155111",
        11155111,
        address!("0x1c7D4B196Cb0C7B01d743Fbc6116a902379C7238"),
        "USDC",
    ),
    // Circle's native USDC on OP Mainnet (as on Base and Arbitrum: "USD Coin").
    usdc(
        "optimism",
        "eip155:10",
        10,
        address!("0x0b2C639c533813f4Aa9D7837CAf62653d097Ff85"),
        "USD Coin",
    ),
    usdc(
        "monad",
        "eip155:143",
        143,
        address!("0x754704Bc059F8C67012fEd69BC8A327a5aafb603"),
        "USDC",
    ),
    usdc(
        "celo-sepolia",
        "eip155:11142220",
        11142220,
        address!("0x01C5C0122039549AD1493B8220cABEdD739BC44E"),
        "USDC",
    ),
    usdc(
        "xdc",
        "eip155:50",
        50,
        address!("0xfA2958CB79b0491CC627c1557F441eF849Ca8eb1"),
        "USDC",
    ),
    usdc(
        "xdc-apothem",
        "eip155:51",
        51,
        address!("0xb5AB69F7bBada22B28e79C8FFAECe55eF1c771D4"),
        "USDC",
    ),
    token(
        "stable",
        "eip155:988",
        988,
        address!("0x779Ded0c9e1022225f8E0630b35a9b54bE713736"),
        "USDT0",
        "USDT0",
        "1",
    ),
    token(
        "stable-testnet",
        "eip155:2201",
        2201,
        address!("0x78Cf24370174180738C5B8E352B6D14c83a6c9A9"),
        "USDT0",
        "USDT0",
        "1",
    ),
    token(
        "flare",
        "eip155:14",
        14,
        address!("0xe7cd86e13AC4309349F30B3435a9d337750fC82D"),
        "USDT0",
        "USD\u{20AE}0",
        "1",
    ),
    token(
        "adi",
        "eip155:36900",
        36900,
        address!("0x9cb8142aEBBcdc60AF7c97Af897A67A8f3CA71C2"),
        "USDC.e",
        "USDC.e",
        "2",
    ),
    token(
        "hpp",
        "eip155:190415",
        190415,
        address!("0x401eCb1D350407f13ba348573E5630B83638E30D"),
        "USDC.e",
        "Bridged USDC",
        "2",
    ),
    token(
        "hpp-sepolia",
        "eip155:181228",
        181228,
        address!("0x401eCb1D350407f13ba348573E5630B83638E30D"),
        "USDC.e",
        "Bridged USDC",
        "2",
    ),
    // On the list, with no EIP-3009 token in it (their stablecoins use Permit2 / EIP-2612).
    bare("abstract", "eip155:2741", 2741),
    bare("abstract-testnet", "eip155:11124", 11124),
    bare("peaq", "eip155:3338", 3338),
    bare("story", "eip155:1514", 1514),
    bare("educhain", "eip155:41923", 41923),
    bare("skale-base-sepolia", "eip155:324705682", 324705682),
    bare("megaeth", "eip155:4326", 4326),
    bare("mezo", "eip155:31612", 31612),
    bare("mezo-testnet", "eip155:31611", 31611),
    bare("radius", "eip155:723487", 723487),
    bare("radius-testnet", "eip155:72344", 72344),
    bare("igra", "eip155:38833", 38833),
];

/// Chains known from configuration only (see [`register`]).
static CONFIGURED: RwLock<Vec<&'static Network>> = RwLock::new(Vec::new());

fn configured() -> Vec<&'static Network> {
    CONFIGURED.read().map(|v| v.clone()).unwrap_or_default()
}

/// Every network a lookup can find: the table, then the configured chains.
pub fn all() -> Vec<&'static Network> {
    KNOWN_NETWORKS.iter().chain(configured()).collect()
}

fn find(pred: impl Fn(&Network) -> bool) -> Option<&'static Network> {
    KNOWN_NETWORKS
        .iter()
        .find(|n| pred(n))
        .or_else(|| configured().into_iter().find(|n| pred(n)))
}

pub fn by_v1_name(name: &str) -> Option<&'static Network> {
    find(|n| n.v1_name == name)
}

pub fn by_caip2(id: &str) -> Option<&'static Network> {
    find(|n| n.caip2 == id)
}

pub fn by_chain_id(chain_id: u64) -> Option<&'static Network> {
    find(|n| n.chain_id == chain_id)
}

/// A v1 name (`base-sepolia`) or a CAIP-2 id (`eip155:84532`).
pub fn parse_network(s: &str) -> Option<&'static Network> {
    by_v1_name(s).or_else(|| by_caip2(s))
}

/// A chain the table lacks, as configuration describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSpec {
    /// Its x402 v1 name (`my-chain`); the CAIP-2 id is `eip155:<chain_id>`.
    pub v1_name: String,
    pub chain_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainSpecError {
    #[error(
        "chain id {chain_id} is the built-in network `{builtin}`: configure it under that name"
    )]
    BuiltinChainId {
        chain_id: u64,
        builtin: &'static str,
    },
    #[error("`{0}` is the name of a built-in network with another chain id")]
    BuiltinName(String),
    #[error("`{0}` is not a usable network name (lower-case letters, digits and `-`)")]
    BadName(String),
    #[error("`{name}` is already the name of chain id {chain_id}")]
    NameTaken { name: String, chain_id: u64 },
}

/// Make a configured chain known to every lookup, for the life of the process. Registering the
/// same chain again returns the entry already there. Entries are never replaced (a lookup may
/// hold one): a name registered with another chain id is refused; a chain id registered under
/// another name gets a second name (by chain id, the first one is found).
pub fn register(spec: &ChainSpec) -> Result<&'static Network, ChainSpecError> {
    let name = spec.v1_name.as_str();
    let well_formed = !name.is_empty()
        && !name.starts_with("eip155")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !well_formed {
        return Err(ChainSpecError::BadName(spec.v1_name.clone()));
    }
    if let Some(builtin) = KNOWN_NETWORKS.iter().find(|n| n.chain_id == spec.chain_id) {
        return Err(ChainSpecError::BuiltinChainId {
            chain_id: spec.chain_id,
            builtin: builtin.v1_name,
        });
    }
    if KNOWN_NETWORKS.iter().any(|n| n.v1_name == name) {
        return Err(ChainSpecError::BuiltinName(spec.v1_name.clone()));
    }
    let mut list = CONFIGURED.write().unwrap_or_else(|e| e.into_inner());
    if let Some(existing) = list.iter().find(|n| n.v1_name == name) {
        if existing.chain_id == spec.chain_id {
            return Ok(existing);
        }
        return Err(ChainSpecError::NameTaken {
            name: spec.v1_name.clone(),
            chain_id: existing.chain_id,
        });
    }
    let network: &'static Network = Box::leak(Box::new(Network {
        v1_name: Box::leak(spec.v1_name.clone().into_boxed_str()),
        caip2: Box::leak(format!("eip155:{}", spec.chain_id).into_boxed_str()),
        chain_id: spec.chain_id,
        usdc: None,
    }));
    list.push(network);
    Ok(network)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ids_and_chain_ids_agree() {
        for n in KNOWN_NETWORKS {
            assert_eq!(n.caip2, format!("eip155:{}", n.chain_id));
            assert_eq!(parse_network(n.v1_name), Some(n));
            assert_eq!(parse_network(n.caip2), Some(n));
            assert_eq!(by_chain_id(n.chain_id), Some(n));
        }
        let mut ids: Vec<u64> = KNOWN_NETWORKS.iter().map(|n| n.chain_id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), KNOWN_NETWORKS.len(), "chain ids are unique");
        assert_eq!(parse_network("eip155:999999"), None);
        assert_eq!(parse_network("moon"), None);
        let name = |n: &str| by_v1_name(n).unwrap().usdc.unwrap().eip712_name;
        assert_eq!(name("base"), "USD Coin");
        assert_eq!(name("base-sepolia"), "USDC");
        assert_eq!(by_chain_id(1).unwrap().v1_name, "ethereum");
        assert_eq!(by_chain_id(10).unwrap().v1_name, "optimism");
        assert_eq!(by_v1_name("megaeth").unwrap().usdc, None);
    }

    #[test]
    fn a_configured_chain_is_found_by_every_lookup() {
        let spec = ChainSpec {
            v1_name: "unit-test-chain".into(),
            chain_id: 990_001,
        };
        let n = register(&spec).unwrap();
        assert_eq!(n.caip2, "eip155:990001");
        assert!(std::ptr::eq(register(&spec).unwrap(), n), "idempotent");
        assert_eq!(parse_network("unit-test-chain"), Some(n));
        assert_eq!(parse_network("eip155:990001"), Some(n));
        assert_eq!(by_chain_id(990_001), Some(n));
        assert!(all().contains(&n));
        let alias = register(&ChainSpec {
            v1_name: "unit-test-chain-2".into(),
            chain_id: 990_001,
        })
        .unwrap();
        assert_eq!(parse_network("unit-test-chain-2"), Some(alias));
        assert_eq!(by_chain_id(990_001), Some(n), "the first name wins by id");
        assert_eq!(
            register(&ChainSpec {
                v1_name: "unit-test-chain".into(),
                chain_id: 990_009,
            }),
            Err(ChainSpecError::NameTaken {
                name: "unit-test-chain".into(),
                chain_id: 990_001
            })
        );
    }

    #[test]
    fn a_configured_chain_cannot_shadow_the_table() {
        let err = |name: &str, chain_id| {
            register(&ChainSpec {
                v1_name: name.into(),
                chain_id,
            })
            .unwrap_err()
        };
        assert_eq!(
            err("my-base", 8453),
            ChainSpecError::BuiltinChainId {
                chain_id: 8453,
                builtin: "base"
            }
        );
        assert_eq!(
            err("base", 990_002),
            ChainSpecError::BuiltinName("base".into())
        );
        assert!(matches!(
            err("My Chain", 990_003),
            ChainSpecError::BadName(_)
        ));
    }
}
