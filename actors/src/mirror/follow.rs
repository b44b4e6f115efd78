//! Following the chain: each head the probe publishes is applied block by block (header,
//! then the served assets' logs by block hash), and the mirror starts over on a reorg, a proxy
//! upgrade, or when too far behind. A block's EIP-7702 authorizations (read with its
//! transactions) make the mirror forget their signers: an EOA that delegated has code.

use std::collections::HashMap;

use alloy::eips::eip7702::SignedAuthorization;
use alloy::primitives::{Address, Bytes, Signature, B256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, Log, TransactionInput, TransactionRequest};
use alloy::sol_types::{SolCall, SolEvent};
use serde::Deserialize;
use x402::exact::evm::IFiatTokenState as Token;

use super::{lock, Mirror, State, TokenState, MAX_CATCH_UP};
use crate::chain::SeenHead;

/// A block as the follower reads it: its header's hashes and, of its transactions, only the
/// EIP-7702 authorization lists.
#[derive(Debug, Deserialize)]
struct Header {
    hash: B256,
    #[serde(rename = "parentHash")]
    parent_hash: B256,
    #[serde(default)]
    transactions: Vec<Tx>,
}

#[derive(Debug, Deserialize)]
struct Tx {
    #[serde(rename = "authorizationList", default)]
    authorization_list: Vec<SignedAuthorization>,
}

impl Header {
    /// The accounts an EIP-7702 authorization of this block may have given code (or taken it
    /// from): their signers. An authorization the chain did not apply (wrong nonce or chain)
    /// is counted too: the account is read again, which costs a seed, never a wrong answer.
    fn delegated(&self) -> Vec<Address> {
        self.transactions
            .iter()
            .flat_map(|tx| &tx.authorization_list)
            .filter_map(|a| {
                let signature = Signature::new(a.r(), a.s(), a.y_parity() != 0);
                signature
                    .recover_address_from_prehash(&a.signature_hash())
                    .ok()
            })
            .collect()
    }
}

/// What applying one block came to.
enum Applied {
    Done,
    /// The mirror cannot follow from here: start over at the head.
    Reset(&'static str),
}

impl Mirror {
    /// Bring the mirror to `head`.
    pub(super) async fn follow(&self, head: SeenHead) {
        let at = lock(&self.state).block;
        match at {
            None => self.restart_at(head).await,
            Some((n, hash)) if n == head.number && hash == head.hash => {}
            Some((n, _)) if head.number <= n || head.number - n > MAX_CATCH_UP => {
                self.reset(if head.number <= n {
                    "head went back or changed at the same height"
                } else {
                    "too far behind"
                });
                self.restart_at(head).await;
            }
            Some((n, _)) => {
                for b in n + 1..=head.number {
                    match self.apply(b).await {
                        Ok(Applied::Done) => {}
                        Ok(Applied::Reset(why)) => {
                            self.reset(why);
                            self.restart_at(head).await;
                            break;
                        }
                        Err(e) => {
                            // Behind the head until a later probe round: nothing is answered.
                            tracing::warn!(network = self.network, block = b, error = %e, "state mirror behind: block not applied");
                            break;
                        }
                    }
                }
            }
        }
        self.report();
    }

    /// Start (over) at `head`: which tokens answer `paused()` there. No account is kept.
    async fn restart_at(&self, head: SeenHead) {
        let at = serde_json::json!({ "blockHash": head.hash });
        let mut batch = alloy::rpc::client::BatchRequest::new(self.provider.client());
        let mut calls = Vec::new();
        for &asset in &self.assets {
            let call = TransactionRequest::default()
                .to(asset)
                .input(TransactionInput::new(
                    Token::pausedCall {}.abi_encode().into(),
                ));
            match batch.add_call::<_, Bytes>("eth_call", &(call, &at)) {
                Ok(w) => calls.push((asset, w)),
                Err(e) => {
                    tracing::warn!(network = self.network, error = %e, "state mirror: start");
                    return;
                }
            }
        }
        if let Err(e) = batch.send().await {
            tracing::warn!(network = self.network, error = %e, "state mirror not started");
            return;
        }
        let mut tokens = HashMap::new();
        for (asset, w) in calls {
            match w
                .await
                .ok()
                .and_then(|b: Bytes| Token::pausedCall::abi_decode_returns(&b).ok())
            {
                Some(paused) => {
                    tokens.insert(
                        asset,
                        TokenState {
                            paused,
                            accounts: HashMap::new(),
                        },
                    );
                }
                None => {
                    tracing::info!(network = self.network, %asset, "asset not mirrored (no paused())")
                }
            }
        }
        let mut s = lock(&self.state);
        if s.block.is_none() {
            s.tokens = tokens;
            s.block = Some((head.number, head.hash));
            s.epoch += 1;
        }
    }

    /// Apply block `b` on top of the last one.
    async fn apply(&self, b: u64) -> Result<Applied, String> {
        let header: Option<Header> = self
            .provider
            .client()
            .request("eth_getBlockByNumber", (format!("{b:#x}"), true))
            .await
            .map_err(|e| e.to_string())?;
        let header = header.ok_or_else(|| format!("block {b} not found"))?;
        let parent = lock(&self.state).block.map(|(_, h)| h);
        if parent != Some(header.parent_hash) {
            return Ok(Applied::Reset("reorg: parent hash differs"));
        }
        let filter = Filter::new()
            .at_block_hash(header.hash)
            .address(self.assets.clone());
        let logs = self
            .provider
            .get_logs(&filter)
            .await
            .map_err(|e| e.to_string())?;
        if logs.iter().any(|l| l.block_hash != Some(header.hash)) {
            return Err("logs of another block".into());
        }
        let mut s = lock(&self.state);
        if s.block.map(|(_, h)| h) != Some(header.parent_hash) {
            return Ok(Applied::Reset("reset while applying"));
        }
        let mut used = Vec::new();
        for log in &logs {
            if let Some(why) = apply_log(&mut s, log, &mut used) {
                return Ok(Applied::Reset(why));
            }
        }
        // An EOA that delegated (EIP-7702) has code from this block on: no longer judged as
        // an EOA. Forgotten, so that its next verify reads it again (and finds the code).
        for account in header.delegated() {
            forget(&mut s, account);
        }
        s.block = Some((b, header.hash));
        drop(s);
        let mut pending = lock(&self.pending);
        for (key, nonce) in used {
            if let Some(p) = pending.get_mut(&key) {
                p.remove(&nonce);
                if p.is_empty() {
                    pending.remove(&key);
                }
            }
        }
        // Ours mined in this block or before (Permit2's too, which log no
        // `AuthorizationUsed`). Time (`validBefore`) is left to the judge's clock.
        if !pending.is_empty() {
            super::judge::prune(&mut pending, 0, Some(b));
        }
        Ok(Applied::Done)
    }
}

/// Drop `account` from every token's mirrored accounts.
pub(super) fn forget(s: &mut State, account: Address) {
    for token in s.tokens.values_mut() {
        if token.accounts.remove(&account).is_some() {
            tracing::debug!(%account, "state mirror: account delegated (EIP-7702); read again at its next verify");
        }
    }
}

/// Apply one log; `Some(why)` when the mirror must start over.
pub(super) fn apply_log(
    s: &mut State,
    log: &Log,
    used: &mut Vec<((Address, Address), B256)>,
) -> Option<&'static str> {
    let asset = log.address();
    let topic0 = *log.topics().first()?;
    if topic0 == Token::Upgraded::SIGNATURE_HASH {
        return Some("token implementation upgraded");
    }
    let token = s.tokens.get_mut(&asset)?;
    let data = &log.inner.data;
    match topic0 {
        Token::Transfer::SIGNATURE_HASH => {
            let Ok(e) = Token::Transfer::decode_log_data(data) else {
                return Some("undecodable Transfer");
            };
            if let Some(a) = token.accounts.get_mut(&e.from) {
                match a.balance.checked_sub(e.value) {
                    Some(b) => a.balance = b,
                    None => return Some("balance below zero"),
                }
            }
            if let Some(a) = token.accounts.get_mut(&e.to) {
                a.balance = a.balance.saturating_add(e.value);
            }
        }
        Token::AuthorizationUsed::SIGNATURE_HASH | Token::AuthorizationCanceled::SIGNATURE_HASH => {
            let (Some(authorizer), Some(nonce)) = (log.topics().get(1), log.topics().get(2)) else {
                return Some("undecodable authorization log");
            };
            let authorizer = Address::from_word(*authorizer);
            if let Some(a) = token.accounts.get_mut(&authorizer) {
                a.free.remove(nonce);
                a.used.insert(*nonce);
            }
            used.push(((asset, authorizer), *nonce));
        }
        Token::Blacklisted::SIGNATURE_HASH | Token::UnBlacklisted::SIGNATURE_HASH => {
            let account = Address::from_word(*log.topics().get(1)?);
            if let Some(a) = token.accounts.get_mut(&account) {
                a.blacklisted = topic0 == Token::Blacklisted::SIGNATURE_HASH;
            }
        }
        Token::Pause::SIGNATURE_HASH => token.paused = true,
        Token::Unpause::SIGNATURE_HASH => token.paused = false,
        _ => {}
    }
    None
}
