//! The SVM (Solana) networks x402 knows, and the programs its `exact` scheme speaks to.
//!
//! Networks: the x402 v1 names `solana` and `solana-devnet`, their CAIP-2 ids
//! (`solana:<first 32 characters of the genesis hash>`), and any other cluster an operator
//! configures at start-up ([`register`]: a name and its genesis hash). Like EVM chains
//! (`crate::network`), configured entries are leaked to `'static` once, so every caller holds
//! `&'static SvmNetwork` whichever source it came from.

use std::sync::RwLock;

use solana_pubkey::Pubkey;

/// An SVM cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvmNetwork {
    pub v1_name: &'static str,
    pub caip2: &'static str,
    /// The cluster's genesis hash (base58), when known: a configured cluster's RPC is checked
    /// against it at start-up.
    pub genesis_hash: Option<&'static str>,
    /// The network's USDC, when Circle issues it there.
    pub usdc: Option<SvmAsset>,
}

/// A token on an SVM network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvmAsset {
    pub mint: &'static str,
    pub symbol: &'static str,
    pub decimals: u8,
    /// `Token` or `Token-2022` (base58 program id).
    pub token_program: &'static str,
}

/// The SPL Token program.
pub const TOKEN_PROGRAM: &str = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
/// The SPL Token-2022 program.
pub const TOKEN_2022_PROGRAM: &str = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb";
/// The associated token account program.
pub const ASSOCIATED_TOKEN_PROGRAM: &str = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL";
/// The compute budget program.
pub const COMPUTE_BUDGET_PROGRAM: &str = "ComputeBudget111111111111111111111111111111";
/// The SPL Memo program (v2).
pub const MEMO_PROGRAM: &str = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr";
/// Lighthouse (wallet guard assertions), which wallets may append.
pub const LIGHTHOUSE_PROGRAM: &str = "L2TExMFKdjpN9kozasaurPirfHy9P8sbXoAN1qA3S95";

/// A base58 program id or address known at compile time.
pub fn pubkey(s: &str) -> Pubkey {
    s.parse().expect("a valid base58 address")
}

/// A base58 address (32 bytes).
pub fn parse_pubkey(s: &str) -> Option<Pubkey> {
    let s = s.trim();
    if s.is_empty() || s.len() > 44 {
        return None;
    }
    s.parse().ok()
}

/// A base58 transaction signature (64 bytes), as a settlement names its transaction.
pub fn parse_signature(s: &str) -> Option<solana_signature::Signature> {
    let s = s.trim();
    if s.is_empty() || s.len() > 88 {
        return None;
    }
    s.parse().ok()
}

/// The associated token account of `owner` for `mint` under `token_program`.
pub fn associated_token_address(owner: &Pubkey, mint: &Pubkey, token_program: &Pubkey) -> Pubkey {
    Pubkey::find_program_address(
        &[owner.as_ref(), token_program.as_ref(), mint.as_ref()],
        &pubkey(ASSOCIATED_TOKEN_PROGRAM),
    )
    .0
}

pub static KNOWN_SVM_NETWORKS: &[SvmNetwork] = &[
    SvmNetwork {
        v1_name: "solana",
        caip2: "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
        genesis_hash: Some("5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d"),
        usdc: Some(SvmAsset {
            mint: "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
            symbol: "USDC",
            decimals: 6,
            token_program: TOKEN_PROGRAM,
        }),
    },
    SvmNetwork {
        v1_name: "solana-devnet",
        caip2: "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
        genesis_hash: Some("EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG"),
        usdc: Some(SvmAsset {
            mint: "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU",
            symbol: "USDC",
            decimals: 6,
            token_program: TOKEN_PROGRAM,
        }),
    },
];

static CONFIGURED: RwLock<Vec<&'static SvmNetwork>> = RwLock::new(Vec::new());

/// Every SVM network: the built-in ones, then the configured ones.
pub fn all() -> Vec<&'static SvmNetwork> {
    let configured = CONFIGURED.read().unwrap_or_else(|e| e.into_inner()).clone();
    KNOWN_SVM_NETWORKS.iter().chain(configured).collect()
}

/// The SVM network a request names, by its x402 v1 name or CAIP-2 id.
pub fn parse_svm_network(s: &str) -> Option<&'static SvmNetwork> {
    all().into_iter().find(|n| n.v1_name == s || n.caip2 == s)
}

/// Is this network name an SVM one (known, or any CAIP-2 `solana:` id)? Such a request's
/// `payTo`, `asset` and payload are read as Solana's.
pub fn is_svm(network: &str) -> bool {
    network.starts_with("solana:") || parse_svm_network(network).is_some()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SvmNetworkError {
    #[error("`{0}` is not a usable network name (lower-case letters, digits and `-`)")]
    BadName(String),
    #[error("`{0}` is not a base58 genesis hash")]
    BadGenesisHash(String),
    #[error("`{0}` is already the name of another network")]
    NameTaken(String),
}

/// Make a configured SVM cluster known to every lookup, for the life of the process: its v1
/// name and its CAIP-2 id `solana:<genesis hash, first 32 characters>`. Registering the same
/// cluster again returns the entry already there.
pub fn register(v1_name: &str, genesis_hash: &str) -> Result<&'static SvmNetwork, SvmNetworkError> {
    let well_formed = !v1_name.is_empty()
        && !v1_name.starts_with("solana:")
        && v1_name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !well_formed {
        return Err(SvmNetworkError::BadName(v1_name.to_owned()));
    }
    let hash_ok = (32..=44).contains(&genesis_hash.len())
        && bs58::decode(genesis_hash)
            .into_vec()
            .is_ok_and(|b| b.len() == 32);
    if !hash_ok {
        return Err(SvmNetworkError::BadGenesisHash(genesis_hash.to_owned()));
    }
    if KNOWN_SVM_NETWORKS.iter().any(|n| n.v1_name == v1_name)
        || crate::network::parse_network(v1_name).is_some()
    {
        return Err(SvmNetworkError::NameTaken(v1_name.to_owned()));
    }
    let mut list = CONFIGURED.write().unwrap_or_else(|e| e.into_inner());
    if let Some(existing) = list.iter().find(|n| n.v1_name == v1_name) {
        if existing.genesis_hash == Some(genesis_hash) {
            return Ok(existing);
        }
        return Err(SvmNetworkError::NameTaken(v1_name.to_owned()));
    }
    let network: &'static SvmNetwork = Box::leak(Box::new(SvmNetwork {
        v1_name: Box::leak(v1_name.to_owned().into_boxed_str()),
        caip2: Box::leak(format!("solana:{}", &genesis_hash[..32]).into_boxed_str()),
        genesis_hash: Some(Box::leak(genesis_hash.to_owned().into_boxed_str())),
        usdc: None,
    }));
    list.push(network);
    Ok(network)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_names_and_caip2_ids_agree() {
        for n in KNOWN_SVM_NETWORKS {
            let hash = n.genesis_hash.unwrap();
            assert_eq!(n.caip2, format!("solana:{}", &hash[..32]));
            assert_eq!(parse_svm_network(n.v1_name), Some(n));
            assert_eq!(parse_svm_network(n.caip2), Some(n));
            assert!(is_svm(n.v1_name));
            let usdc = n.usdc.unwrap();
            assert!(parse_pubkey(usdc.mint).is_some());
        }
        assert!(crate::network::parse_network("solana").is_none());
        assert!(!is_svm("base-sepolia"));
        assert!(is_svm("solana:anything"));
    }

    #[test]
    fn a_configured_cluster_is_found_by_name_and_caip2() {
        let hash = "49avSSePTbFZ1GRNebMrgSpjHEnPX7ioJQMLmEWs5ipd";
        let n = register("surfnet-local", hash).unwrap();
        assert_eq!(n.caip2, "solana:49avSSePTbFZ1GRNebMrgSpjHEnPX7io");
        assert_eq!(parse_svm_network("surfnet-local"), Some(n));
        assert_eq!(parse_svm_network(n.caip2), Some(n));
        assert!(std::ptr::eq(register("surfnet-local", hash).unwrap(), n));
        assert!(register("solana", hash).is_err());
        assert!(register("base", hash).is_err());
        assert!(register("Bad Name", hash).is_err());
        assert!(register("other", "0x12").is_err());
    }

    #[test]
    fn associated_token_addresses_are_the_ata_programs() {
        // Circle's USDC ATA of a well-known owner, as the ATA program derives it.
        let owner = pubkey("7UX2i7SucgLMQcfZ75s3VXmZZY4YRUyJN9X1RgfMoDUi");
        let mint = pubkey("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v");
        let ata = associated_token_address(&owner, &mint, &pubkey(TOKEN_PROGRAM));
        let other = associated_token_address(&owner, &mint, &pubkey(TOKEN_2022_PROGRAM));
        assert_ne!(ata, other);
        assert!(!ata.is_on_curve());
    }
}
