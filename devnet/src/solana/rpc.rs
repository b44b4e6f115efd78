//! Solana JSON-RPC over reqwest, with surfnet's cheatcodes.

use super::*;

/// A transaction's status as `getSignatureStatuses` reports it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureStatus {
    pub slot: u64,
    pub confirmations: Option<u64>,
    /// `TransactionError` as JSON, `None` when it succeeded.
    pub err: Option<Value>,
    /// "processed", "confirmed" or "finalized".
    pub confirmation_status: Option<String>,
}

impl SignatureStatus {
    pub fn is_confirmed(&self) -> bool {
        matches!(
            self.confirmation_status.as_deref(),
            Some("confirmed" | "finalized")
        )
    }
}

/// An account as `getAccountInfo` (base64) reports it.
#[derive(Debug, Clone)]
pub struct AccountInfo {
    pub lamports: u64,
    pub owner: Pubkey,
    pub data: Vec<u8>,
    pub executable: bool,
}

/// Solana JSON-RPC over reqwest, with surfnet's cheatcodes.
#[derive(Debug, Clone)]
pub struct SolanaRpc {
    pub url: String,
    http: reqwest::Client,
    id: std::sync::Arc<AtomicU64>,
}

impl SolanaRpc {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            id: Default::default(),
        }
    }

    /// One call; a JSON-RPC error is `SolanaError::Rpc` with its message (and data).
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, SolanaError> {
        let err = |message: String| SolanaError::Rpc {
            method: method.to_owned(),
            message,
        };
        let id = self.id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp: Value = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?
            .json()
            .await
            .map_err(|e| err(e.to_string()))?;
        if let Some(e) = resp.get("error") {
            return Err(err(e.to_string()));
        }
        serde_json::from_value(resp.get("result").cloned().unwrap_or(Value::Null))
            .map_err(|e| err(format!("{e}: {resp}")))
    }

    /// `result.value` of a call answering `{context, value}`.
    async fn call_value<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, SolanaError> {
        let v: Value = self.call(method, params).await?;
        serde_json::from_value(v.get("value").cloned().unwrap_or(Value::Null)).map_err(|e| {
            SolanaError::Rpc {
                method: method.to_owned(),
                message: format!("{e}: {v}"),
            }
        })
    }

    /// The latest blockhash and its `lastValidBlockHeight`.
    pub async fn latest_blockhash(&self) -> Result<(Hash, u64), SolanaError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Latest {
            blockhash: String,
            last_valid_block_height: u64,
        }
        let l: Latest = self
            .call_value("getLatestBlockhash", json!([{"commitment": "confirmed"}]))
            .await?;
        Ok((
            l.blockhash.parse().map_err(other)?,
            l.last_valid_block_height,
        ))
    }

    pub async fn is_blockhash_valid(&self, hash: &Hash) -> Result<bool, SolanaError> {
        self.call_value(
            "isBlockhashValid",
            json!([hash.to_string(), {"commitment": "confirmed"}]),
        )
        .await
    }

    pub async fn block_height(&self) -> Result<u64, SolanaError> {
        self.call("getBlockHeight", json!([{"commitment": "confirmed"}]))
            .await
    }

    pub async fn slot(&self) -> Result<u64, SolanaError> {
        self.call("getSlot", json!([{"commitment": "confirmed"}]))
            .await
    }

    pub async fn genesis_hash(&self) -> Result<String, SolanaError> {
        self.call("getGenesisHash", json!([])).await
    }

    /// Lamports of `who` (0 when the account does not exist).
    pub async fn balance(&self, who: &Pubkey) -> Result<u64, SolanaError> {
        self.call_value(
            "getBalance",
            json!([who.to_string(), {"commitment": "confirmed"}]),
        )
        .await
    }

    pub async fn minimum_balance_for_rent_exemption(&self, len: usize) -> Result<u64, SolanaError> {
        self.call("getMinimumBalanceForRentExemption", json!([len]))
            .await
    }

    pub async fn account(&self, who: &Pubkey) -> Result<Option<AccountInfo>, SolanaError> {
        #[derive(Deserialize)]
        struct Raw {
            lamports: u64,
            owner: String,
            data: (String, String),
            executable: bool,
        }
        let raw: Option<Raw> = self
            .call_value(
                "getAccountInfo",
                json!([who.to_string(), {"encoding": "base64", "commitment": "confirmed"}]),
            )
            .await?;
        raw.map(|r| {
            Ok(AccountInfo {
                lamports: r.lamports,
                owner: r.owner.parse().map_err(other)?,
                data: base64::engine::general_purpose::STANDARD
                    .decode(r.data.0)
                    .map_err(other)?,
                executable: r.executable,
            })
        })
        .transpose()
    }

    /// Atomic units held by token account `account`; `None` when it does not exist.
    pub async fn token_account_balance(
        &self,
        account: &Pubkey,
    ) -> Result<Option<u64>, SolanaError> {
        let Some(info) = self.account(account).await? else {
            return Ok(None);
        };
        if info.owner != TOKEN_PROGRAM && info.owner != TOKEN_2022_PROGRAM || info.data.len() < 72 {
            return Err(SolanaError::Other(format!(
                "{account} is not a token account"
            )));
        }
        // Token account layout: mint (32), owner (32), amount (u64 LE), ...
        Ok(Some(u64::from_le_bytes(
            info.data[64..72].try_into().expect("8 bytes"),
        )))
    }

    /// Send (preflight on, base64) and return the signature.
    pub async fn send_transaction(
        &self,
        tx: &VersionedTransaction,
    ) -> Result<Signature, SolanaError> {
        let sig: String = self
            .call(
                "sendTransaction",
                json!([encode_transaction(tx), {"encoding": "base64", "preflightCommitment": "confirmed"}]),
            )
            .await?;
        sig.parse().map_err(other)
    }

    /// `simulateTransaction` with signature verification and the transaction's own blockhash
    /// (as the reference facilitator simulates); the `value` (`err`, `logs`, `unitsConsumed`).
    pub async fn simulate_transaction(
        &self,
        tx: &VersionedTransaction,
    ) -> Result<Value, SolanaError> {
        self.call_value(
            "simulateTransaction",
            json!([encode_transaction(tx), {
                "encoding": "base64",
                "sigVerify": true,
                "replaceRecentBlockhash": false,
                "commitment": "confirmed"
            }]),
        )
        .await
    }

    /// Status of `sig`, searching the whole history; `None` if the cluster never saw it land.
    pub async fn signature_status(
        &self,
        sig: &Signature,
    ) -> Result<Option<SignatureStatus>, SolanaError> {
        Ok(self
            .signature_statuses(std::slice::from_ref(sig))
            .await?
            .pop()
            .flatten())
    }

    /// Statuses of `sigs`, in order, searching the whole history (256 a call, the RPC's most).
    pub async fn signature_statuses(
        &self,
        sigs: &[Signature],
    ) -> Result<Vec<Option<SignatureStatus>>, SolanaError> {
        let mut out = Vec::with_capacity(sigs.len());
        for chunk in sigs.chunks(256) {
            let names: Vec<String> = chunk.iter().map(ToString::to_string).collect();
            let v: Vec<Option<SignatureStatus>> = self
                .call_value(
                    "getSignatureStatuses",
                    json!([names, {"searchTransactionHistory": true}]),
                )
                .await?;
            if v.len() != chunk.len() {
                return Err(SolanaError::Other(format!(
                    "getSignatureStatuses answered {} statuses for {} signatures",
                    v.len(),
                    chunk.len()
                )));
            }
            out.extend(v);
        }
        Ok(out)
    }

    /// `getTransaction` of `sig` (`confirmed`, JSON encoding): `null` when not found.
    pub async fn transaction(&self, sig: &Signature) -> Result<Value, SolanaError> {
        self.call(
            "getTransaction",
            json!([sig.to_string(), {"encoding": "json", "commitment": "confirmed", "maxSupportedTransactionVersion": 0}]),
        )
        .await
    }

    /// Poll until `sig` is confirmed (Ok) or failed on-chain (Err), for at most `timeout`.
    pub async fn confirm(
        &self,
        sig: &Signature,
        timeout: Duration,
    ) -> Result<SignatureStatus, SolanaError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.signature_status(sig).await? {
                if let Some(err) = &status.err {
                    return Err(SolanaError::Transaction(sig.to_string(), err.to_string()));
                }
                if status.is_confirmed() {
                    return Ok(status);
                }
            }
            if Instant::now() >= deadline {
                return Err(SolanaError::Transaction(
                    sig.to_string(),
                    format!("not confirmed within {timeout:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn send_and_confirm(
        &self,
        tx: &VersionedTransaction,
    ) -> Result<Signature, SolanaError> {
        let sig = self.send_transaction(tx).await?;
        self.confirm(&sig, Duration::from_secs(30)).await?;
        Ok(sig)
    }

    /// `requestAirdrop` of `lamports` to `to`, confirmed.
    pub async fn airdrop(&self, to: &Pubkey, lamports: u64) -> Result<(), SolanaError> {
        let sig: String = self
            .call("requestAirdrop", json!([to.to_string(), lamports]))
            .await?;
        self.confirm(&sig.parse().map_err(other)?, Duration::from_secs(30))
            .await
            .map(|_| ())
    }

    // --- surfnet cheatcodes ---------------------------------------------------------------

    /// `surfnet_setAccount`: write an account outright.
    pub async fn set_account(
        &self,
        who: &Pubkey,
        lamports: u64,
        data: &[u8],
        owner: &Pubkey,
    ) -> Result<(), SolanaError> {
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        self.call::<Value>(
            "surfnet_setAccount",
            json!([who.to_string(), {"lamports": lamports, "data": hex, "owner": owner.to_string()}]),
        )
        .await
        .map(|_| ())
    }

    /// `surfnet_setTokenAccount`: set (creating if needed) `owner`'s associated token account
    /// for `mint` to hold `amount`.
    pub async fn set_token_balance(
        &self,
        owner: &Pubkey,
        mint: &Mint,
        amount: u64,
    ) -> Result<(), SolanaError> {
        self.call::<Value>(
            "surfnet_setTokenAccount",
            json!([owner.to_string(), mint.address.to_string(), {"amount": amount, "state": "initialized"}, mint.token_program.to_string()]),
        )
        .await
        .map(|_| ())
    }

    /// `surfnet_pauseClock`. One block may still follow (a clock tick already queued): use
    /// [`SolanaCluster::pause_clock`], which waits for the height to hold.
    pub async fn pause_clock(&self) -> Result<Value, SolanaError> {
        self.call("surfnet_pauseClock", json!([])).await
    }

    pub async fn resume_clock(&self) -> Result<Value, SolanaError> {
        self.call("surfnet_resumeClock", json!([])).await
    }

    /// Jump forward to `slot` (epoch info after the jump).
    pub async fn time_travel_to_slot(&self, slot: u64) -> Result<Value, SolanaError> {
        self.call("surfnet_timeTravel", json!([{"absoluteSlot": slot}]))
            .await
    }

    /// Move the cluster past `last_valid_block_height` (a blockhash's), so transactions using
    /// that blockhash can never land. Returns the new block height.
    pub async fn expire_blockhash(&self, last_valid_block_height: u64) -> Result<u64, SolanaError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let height = self.block_height().await?;
            if height > last_valid_block_height {
                return Ok(height);
            }
            if Instant::now() >= deadline {
                return Err(SolanaError::Other(format!(
                    "block height {height} did not pass {last_valid_block_height}"
                )));
            }
            let slot = self.slot().await?;
            self.time_travel_to_slot(slot + (last_valid_block_height - height) + 2)
                .await?;
        }
    }
}
