//! Seeding: the accounts a verify named that the mirror did not know, read at the mirror's
//! block in one batch, and the least recently used dropped past `max_accounts`.

use alloy::primitives::{Address, Bytes, B256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, Log, TransactionInput, TransactionRequest};
use alloy::sol_types::{SolCall, SolEvent};
use x402::exact::evm::{IFiatTokenState as Token, IEIP3009};

use super::{lock, Account, Mirror, State, MAX_FREE_NONCES};

impl Mirror {
    /// Add the accounts of `asset` not mirrored yet (reads at the mirror's block, one batch).
    /// Dropped if the mirror moves on meanwhile.
    pub async fn seed(&self, asset: Address, accounts: &[Address]) {
        let (block, hash, epoch, wanted) = {
            let s = lock(&self.state);
            let (Some((n, h)), Some(t)) = (s.block, s.tokens.get(&asset)) else {
                return;
            };
            let mut wanted: Vec<Address> = accounts
                .iter()
                .copied()
                .filter(|a| !a.is_zero() && !t.accounts.contains_key(a))
                .collect();
            wanted.sort();
            wanted.dedup();
            (n, h, s.epoch, wanted)
        };
        let mine: Vec<Address> = {
            let mut seeding = lock(&self.seeding);
            wanted
                .into_iter()
                .filter(|a| seeding.insert((asset, *a)))
                .collect()
        };
        if mine.is_empty() {
            return;
        }
        // With each account's history from block 0; a node that refuses the whole batch for
        // it is asked again without (the accounts' nonces are then read one by one).
        let read = match self.read_accounts(asset, &mine, block, hash, true).await {
            Ok(read) => Ok(read),
            Err(e) => {
                tracing::debug!(network = self.network, error = %e, "state mirror: seed with history refused; seeding without");
                self.read_accounts(asset, &mine, block, hash, false).await
            }
        };
        {
            let mut seeding = lock(&self.seeding);
            for a in &mine {
                seeding.remove(&(asset, *a));
            }
        }
        let read = match read {
            Ok(read) => read,
            Err(e) => {
                tracing::debug!(network = self.network, error = %e, "state mirror: seed failed");
                return;
            }
        };
        let mut s = lock(&self.state);
        if s.epoch != epoch || s.block != Some((block, hash)) {
            return; // moved on: the next verify seeds again
        }
        s.tick += 1;
        let tick = s.tick;
        let cap = self.config.max_accounts.max(2);
        let total = s.accounts();
        let Some(token) = s.tokens.get_mut(&asset) else {
            return;
        };
        let mut used_nonces = Vec::new();
        for (address, mut account) in read {
            account.touched = tick;
            used_nonces.push((address, account.used.clone()));
            token.accounts.entry(address).or_insert(account);
        }
        if total + mine.len() > cap {
            evict(&mut s, cap);
        }
        drop(s);
        // Our settles the chain already shows (at or before the seed block) are in the
        // balance read: they no longer count as pending.
        let mut pending = lock(&self.pending);
        for (address, used) in used_nonces {
            if let Some(of) = pending.get_mut(&(asset, address)) {
                of.retain(|nonce, _| !used.contains(nonce));
            }
        }
        drop(pending);
        self.report();
    }

    /// Whether `nonce` of `payer` is used, read at the mirror's block, for an account seeded
    /// without its history (`Fallback::UnknownNonce`). Kept unless the mirror was reset
    /// meanwhile: a later use is applied from its log (`used` wins over `free`).
    pub async fn read_nonce(&self, asset: Address, payer: Address, nonce: B256) {
        let (hash, epoch) = {
            let s = lock(&self.state);
            let Some((_, h)) = s.block else { return };
            let wanted = s
                .tokens
                .get(&asset)
                .and_then(|t| t.accounts.get(&payer))
                .is_some_and(|a| {
                    !a.history && !a.used.contains(&nonce) && !a.free.contains(&nonce)
                });
            if !wanted {
                return;
            }
            (h, s.epoch)
        };
        let call = TransactionRequest::default()
            .to(asset)
            .input(TransactionInput::new(
                IEIP3009::authorizationStateCall {
                    authorizer: payer,
                    nonce,
                }
                .abi_encode()
                .into(),
            ));
        let at = serde_json::json!({ "blockHash": hash });
        let read: Result<Bytes, _> = self.provider.client().request("eth_call", (call, at)).await;
        let used = match read.map_err(|e| e.to_string()).and_then(|b| {
            IEIP3009::authorizationStateCall::abi_decode_returns(&b).map_err(|e| e.to_string())
        }) {
            Ok(used) => used,
            Err(e) => {
                tracing::debug!(network = self.network, error = %e, "state mirror: nonce read failed");
                return;
            }
        };
        let mut s = lock(&self.state);
        if s.epoch != epoch {
            return;
        }
        let Some(a) = s
            .tokens
            .get_mut(&asset)
            .and_then(|t| t.accounts.get_mut(&payer))
        else {
            return;
        };
        if used {
            a.used.insert(nonce);
        } else if !a.used.contains(&nonce) {
            if a.free.len() >= MAX_FREE_NONCES {
                a.free.clear();
            }
            a.free.insert(nonce);
        }
    }

    async fn read_accounts(
        &self,
        asset: Address,
        accounts: &[Address],
        block: u64,
        hash: B256,
        with_history: bool,
    ) -> Result<Vec<(Address, Account)>, String> {
        let at = serde_json::json!({ "blockHash": hash });
        let rpc = |e: alloy::transports::TransportError| e.to_string();
        let mut batch = alloy::rpc::client::BatchRequest::new(self.provider.client());
        let call = |data: Vec<u8>| {
            TransactionRequest::default()
                .to(asset)
                .input(TransactionInput::new(data.into()))
        };
        let mut waiting = Vec::new();
        for &a in accounts {
            let balance = batch
                .add_call::<_, Bytes>(
                    "eth_call",
                    &(
                        call(IEIP3009::balanceOfCall { account: a }.abi_encode()),
                        &at,
                    ),
                )
                .map_err(rpc)?;
            let blacklisted = batch
                .add_call::<_, Bytes>(
                    "eth_call",
                    &(
                        call(Token::isBlacklistedCall { account: a }.abi_encode()),
                        &at,
                    ),
                )
                .map_err(rpc)?;
            let code = batch
                .add_call::<_, Bytes>("eth_getCode", &(a, &at))
                .map_err(rpc)?;
            let history = if with_history {
                let filter = Filter::new()
                    .address(asset)
                    .from_block(0)
                    .to_block(block)
                    .event_signature(vec![
                        Token::AuthorizationUsed::SIGNATURE_HASH,
                        Token::AuthorizationCanceled::SIGNATURE_HASH,
                    ])
                    .topic1(a.into_word());
                Some(
                    batch
                        .add_call::<_, Vec<Log>>("eth_getLogs", &(filter,))
                        .map_err(rpc)?,
                )
            } else {
                None
            };
            waiting.push((a, balance, blacklisted, code, history));
        }
        batch.send().await.map_err(rpc)?;
        let mut out = Vec::with_capacity(waiting.len());
        for (a, balance, blacklisted, code, history) in waiting {
            let balance = IEIP3009::balanceOfCall::abi_decode_returns(&balance.await.map_err(rpc)?)
                .map_err(|e| e.to_string())?;
            let blacklisted =
                Token::isBlacklistedCall::abi_decode_returns(&blacklisted.await.map_err(rpc)?)
                    .map_err(|e| e.to_string())?;
            let code: Bytes = code.await.map_err(rpc)?;
            // A refused range (an error answer for this call alone): no history.
            let history: Option<Vec<Log>> = match history {
                Some(h) => match h.await {
                    Ok(logs) => Some(logs),
                    Err(e) => {
                        tracing::debug!(network = self.network, account = %a, error = %e, "state mirror: authorization logs from block 0 refused; nonces read one by one");
                        None
                    }
                },
                None => None,
            };
            let used = history
                .iter()
                .flatten()
                .filter_map(|l| l.topics().get(2).copied())
                .collect();
            out.push((
                a,
                Account {
                    balance,
                    blacklisted,
                    has_code: !code.is_empty(),
                    used,
                    history: history.is_some(),
                    free: Default::default(),
                    touched: 0,
                },
            ));
        }
        Ok(out)
    }
}
/// Drop the least recently used accounts: `cap * 7 / 8` stay (so eviction runs once per
/// many seeds, not at each).
pub(super) fn evict(s: &mut State, cap: usize) {
    let keep = cap * 7 / 8;
    let mut ticks: Vec<u64> = s
        .tokens
        .values()
        .flat_map(|t| t.accounts.values().map(|a| a.touched))
        .collect();
    if ticks.len() <= keep {
        return;
    }
    let cut = ticks.len() - keep;
    ticks.select_nth_unstable(cut - 1);
    let threshold = ticks[cut - 1];
    for t in s.tokens.values_mut() {
        t.accounts.retain(|_, a| a.touched > threshold);
    }
}
