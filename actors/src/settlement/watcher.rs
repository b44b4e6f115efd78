//! `ReceiptWatcher`: one per network, it hands each awaited transaction its receipt.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::B256;
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::TransactionReceipt;
use dashmap::DashMap;
use tokio::sync::mpsc;

type Waiters = DashMap<B256, Vec<mpsc::UnboundedSender<TransactionReceipt>>>;

/// Watches a network's new blocks and hands each receipt to whoever waits for it: one
/// `eth_getBlockReceipts` per block serves every in-flight settlement of the network.
#[derive(Clone)]
pub struct ReceiptWatcher {
    provider: RootProvider,
    waiters: Arc<Waiters>,
}

impl ReceiptWatcher {
    /// Start the polling loop on the current runtime: the head is read every `poll`, and the
    /// receipts of the blocks since the last read while someone waits.
    pub fn start(provider: RootProvider, poll: Duration) -> Self {
        let watcher = Self {
            provider,
            waiters: Arc::new(DashMap::new()),
        };
        let w = watcher.clone();
        tokio::spawn(async move {
            let mut last: Option<u64> = None;
            let mut ticker = tokio::time::interval(poll);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if Arc::strong_count(&w.waiters) == 1 {
                    return; // every handle is gone
                }
                let head = match w.provider.get_block_number().await {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::debug!(error = %e, "block number poll failed");
                        continue;
                    }
                };
                let from = match last {
                    Some(l) if head > l => l + 1,
                    Some(_) => continue,
                    None => head,
                };
                if w.waiters.is_empty() {
                    last = Some(head);
                    continue;
                }
                let mut done = from;
                for block in from..=head {
                    match w.provider.get_block_receipts(block.into()).await {
                        Ok(Some(receipts)) => {
                            for r in receipts {
                                w.deliver(r);
                            }
                            done = block;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(error = %e, block, "block receipts failed; polling hashes");
                            w.poll_each().await;
                            done = block;
                        }
                    }
                }
                last = Some(done);
            }
        });
        watcher
    }

    fn deliver(&self, r: TransactionReceipt) {
        if let Some((_, senders)) = self.waiters.remove(&r.transaction_hash) {
            for s in senders {
                let _ = s.send(r.clone());
            }
        }
    }

    async fn poll_each(&self) {
        let hashes: Vec<B256> = self.waiters.iter().map(|e| *e.key()).collect();
        for h in hashes {
            if let Ok(Some(r)) = self.provider.get_transaction_receipt(h).await {
                self.deliver(r);
            }
        }
    }

    /// Wait for the receipt of `tx_hash`, at most `timeout`. `None` on timeout.
    pub async fn wait(&self, tx_hash: B256, timeout: Duration) -> Option<TransactionReceipt> {
        self.wait_any(&[tx_hash], timeout).await
    }

    /// Wait for the first receipt of any of `hashes` (a transaction and its replacements: the
    /// chain mines one of them).
    pub async fn wait_any(&self, hashes: &[B256], timeout: Duration) -> Option<TransactionReceipt> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for h in hashes {
            self.waiters.entry(*h).or_default().push(tx.clone());
        }
        drop(tx);
        // Mined before we registered? Ask once directly.
        for h in hashes {
            if let Ok(Some(r)) = self.provider.get_transaction_receipt(*h).await {
                self.deliver(r);
                break;
            }
        }
        let got = tokio::time::timeout(timeout, rx.recv())
            .await
            .ok()
            .flatten();
        drop(rx);
        // Drop our closed senders so the map does not grow with abandoned waits.
        for h in hashes {
            if let dashmap::mapref::entry::Entry::Occupied(mut e) = self.waiters.entry(*h) {
                e.get_mut().retain(|s| !s.is_closed());
                if e.get().is_empty() {
                    e.remove();
                }
            }
        }
        got
    }
}
