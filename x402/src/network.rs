//! The networks x402 knows: v1 names, CAIP-2 ids, chain ids, and each network's USDC with the
//! EIP-712 domain name/version its EIP-3009 signatures are bound to.

use alloy_primitives::{address, Address};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    pub v1_name: &'static str,
    pub caip2: &'static str,
    pub chain_id: u64,
    pub usdc: Address,
    /// EIP-712 domain name of USDC here: "USDC" on some chains, "USD Coin" on others — the
    /// most common integration bug (X402.md).
    pub usdc_name: &'static str,
    pub usdc_version: &'static str,
}

const fn net(
    v1_name: &'static str,
    caip2: &'static str,
    chain_id: u64,
    usdc: Address,
    usdc_name: &'static str,
) -> Network {
    Network {
        v1_name,
        caip2,
        chain_id,
        usdc,
        usdc_name,
        usdc_version: "2",
    }
}

pub static KNOWN_NETWORKS: [Network; 12] = [
    net(
        "base",
        "eip155:8453",
        8453,
        address!("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"),
        "USD Coin",
    ),
    net(
        "base-sepolia",
        "eip155:84532",
        84532,
        address!("0x036CbD53842c5426634e7929541eC2318f3dCF7e"),
        "USDC",
    ),
    net(
        "avalanche",
        "eip155:43114",
        43114,
        address!("0xB97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E"),
        "USD Coin",
    ),
    net(
        "avalanche-fuji",
        "eip155:43113",
        43113,
        address!("0x5425890298aed601595a70AB815c96711a31Bc65"),
        "USD Coin",
    ),
    net(
        "polygon",
        "eip155:137",
        137,
        address!("0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359"),
        "USD Coin",
    ),
    net(
        "polygon-amoy",
        "eip155:80002",
        80002,
        address!("0x41E94Eb019C0762f9Bfcf9Fb1E58725BfB0e7582"),
        "USDC",
    ),
    net(
        "arbitrum",
        "eip155:42161",
        42161,
        address!("0xaf88d065e77c8cC2239327C5EDb3A432268e5831"),
        "USD Coin",
    ),
    net(
        "arbitrum-sepolia",
        "eip155:421614",
        421614,
        address!("0x75faf114eafb1BDbe2F0316DF893fd58CE46AA4d"),
        "USD Coin",
    ),
    net(
        "sei",
        "eip155:1329",
        1329,
        address!("0xe15fC38F6D8c56aF07bbCBe3BAf5708A2Bf42392"),
        "USDC",
    ),
    net(
        "sei-testnet",
        "eip155:1328",
        1328,
        address!("0x4fCF1784B31630811181f670Aea7A7bEF803eaED"),
        "USDC",
    ),
    net(
        "iotex",
        "eip155:4689",
        4689,
        address!("0xcdf79194c6c285077a58da47641d4dbe51f63542"),
        "Bridged USDC",
    ),
    net(
        "celo",
        "eip155:42220",
        42220,
        address!("0xcebA9300f2b948710d2653dD7B07f33A8B32118C"),
        "USDC",
    ),
];

pub fn by_v1_name(name: &str) -> Option<&'static Network> {
    KNOWN_NETWORKS.iter().find(|n| n.v1_name == name)
}

pub fn by_caip2(id: &str) -> Option<&'static Network> {
    KNOWN_NETWORKS.iter().find(|n| n.caip2 == id)
}

pub fn by_chain_id(chain_id: u64) -> Option<&'static Network> {
    KNOWN_NETWORKS.iter().find(|n| n.chain_id == chain_id)
}

/// A v1 name (`base-sepolia`) or a CAIP-2 id (`eip155:84532`).
pub fn parse_network(s: &str) -> Option<&'static Network> {
    by_v1_name(s).or_else(|| by_caip2(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ids_and_chain_ids_agree() {
        for n in &KNOWN_NETWORKS {
            assert_eq!(n.caip2, format!("eip155:{}", n.chain_id));
            assert_eq!(parse_network(n.v1_name), Some(n));
            assert_eq!(parse_network(n.caip2), Some(n));
            assert_eq!(by_chain_id(n.chain_id), Some(n));
        }
        assert_eq!(parse_network("eip155:1"), None);
        assert_eq!(parse_network("moon"), None);
        assert_eq!(by_v1_name("base").unwrap().usdc_name, "USD Coin");
        assert_eq!(by_v1_name("base-sepolia").unwrap().usdc_name, "USDC");
    }
}
