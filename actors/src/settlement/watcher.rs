//! `ReceiptWatcher`: one per network, it hands each awaited transaction its receipt.
//!
//! It reads the head (`eth_blockNumber`) every `poll` (`settlement.receipt_poll_ms`), and the
//! receipts of each new block (`eth_getBlockReceipts`, one call for every settlement awaited).
//! While someone waits, the reads are paced by the chain's block time, learned from when new
//! heads were first seen (`Pace`): from just before the next block is due, the head is read
//! every 1/40 of a block (at least 10 ms) for up to a quarter block, so a receipt is seen within
//! a few hundredths of a block of its block rather than up to `poll` later (a quarter of a 1 s
//! block at 250 ms). Outside that window, and on chains whose blocks are not much longer than
//! `poll`, the pace stays `poll`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::B256;
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::TransactionReceipt;
use dashmap::DashMap;
use tokio::sync::mpsc;
use tokio::time::Instant;

type Waiters = DashMap<B256, Vec<mpsc::UnboundedSender<TransactionReceipt>>>;

/// Gaps between new heads remembered to learn the block time.
const GAPS: usize = 8;

/// When the head is read next: every `poll`, and often (`fast`) around the time the next block
/// is due, learned from the gaps between the first sightings of consecutive heads.
#[derive(Debug)]
struct Pace {
    poll: Duration,
    /// When the latest head was first seen.
    seen: Option<Instant>,
    /// Recent gaps between first sightings of heads one block apart.
    gaps: VecDeque<Duration>,
}

impl Pace {
    fn new(poll: Duration) -> Self {
        Self {
            poll,
            seen: None,
            gaps: VecDeque::with_capacity(GAPS),
        }
    }

    /// A head `advanced` blocks past the last one was first seen at `at`.
    fn saw(&mut self, at: Instant, advanced: u64) {
        if let (Some(before), 1) = (self.seen, advanced) {
            if self.gaps.len() == GAPS {
                self.gaps.pop_front();
            }
            self.gaps.push_back(at.saturating_duration_since(before));
        }
        self.seen = Some(at);
    }

    /// The chain's block time, as it looks from here: the shortest recent gap (a head seen
    /// late makes its gap longer and the next one shorter; the shortest is at worst early).
    fn block_time(&self) -> Option<Duration> {
        (self.gaps.len() >= 2)
            .then(|| self.gaps.iter().min().copied())
            .flatten()
    }

    /// How often the head is read near the time a block is due.
    fn fast(block_time: Duration) -> Duration {
        (block_time / 40).max(Duration::from_millis(10))
    }

    /// How long to wait at `now` before the next read of the head.
    fn wait(&self, now: Instant) -> Duration {
        let (Some(seen), Some(block)) = (self.seen, self.block_time()) else {
            return self.poll;
        };
        let fast = Self::fast(block);
        if fast >= self.poll {
            return self.poll;
        }
        let from = seen + block.saturating_sub(fast);
        let until = seen + block + block / 4;
        if now < from {
            (from - now).min(self.poll)
        } else if now < until {
            fast
        } else {
            self.poll
        }
    }
}

/// Watches a network's new blocks and hands each receipt to whoever waits for it: one
/// `eth_getBlockReceipts` per block serves every in-flight settlement of the network.
#[derive(Clone)]
pub struct ReceiptWatcher {
    provider: RootProvider,
    waiters: Arc<Waiters>,
}

impl ReceiptWatcher {
    /// Start the polling loop on the current runtime: the head is read every `poll` (more
    /// often when a block is due and someone waits: `Pace`), and the receipts of the blocks
    /// since the last read while someone waits.
    pub fn start(provider: RootProvider, poll: Duration) -> Self {
        let watcher = Self {
            provider,
            waiters: Arc::new(DashMap::new()),
        };
        let w = watcher.clone();
        tokio::spawn(async move {
            let mut last: Option<u64> = None;
            let mut pace = Pace::new(poll);
            loop {
                let wait = if w.waiters.is_empty() {
                    poll
                } else {
                    pace.wait(Instant::now())
                };
                tokio::time::sleep(wait).await;
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
                pace.saw(Instant::now(), head + 1 - from);
                if w.waiters.is_empty() {
                    last = Some(head);
                    continue;
                }
                tracing::debug!(head, from, waiting = w.waiters.len(), "new head seen");
                let mut done = from;
                for block in from..=head {
                    let asked = Instant::now();
                    match w.provider.get_block_receipts(block.into()).await {
                        Ok(Some(receipts)) => {
                            let n = receipts.len();
                            let read_ms = asked.elapsed().as_secs_f64() * 1e3;
                            let mut delivered = 0;
                            for r in receipts {
                                delivered += usize::from(w.deliver(r));
                            }
                            tracing::debug!(
                                block,
                                receipts = n,
                                delivered,
                                read_ms,
                                "block receipts delivered"
                            );
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

    fn deliver(&self, r: TransactionReceipt) -> bool {
        if let Some((_, senders)) = self.waiters.remove(&r.transaction_hash) {
            for s in senders {
                let _ = s.send(r.clone());
            }
            return true;
        }
        false
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A pace that saw heads one block apart, `block` apart in time, the last at `t`.
    fn learned(poll: Duration, block: Duration, t: Instant) -> Pace {
        let mut pace = Pace::new(poll);
        for i in (0..4).rev() {
            pace.saw(t - block * i, 1);
        }
        pace
    }

    #[test]
    fn reads_every_poll_until_the_block_time_is_known() {
        let t = Instant::now();
        let mut pace = Pace::new(250 * MS);
        assert_eq!(pace.wait(t), 250 * MS);
        pace.saw(t, 1);
        pace.saw(t + 1000 * MS, 1);
        assert_eq!(pace.block_time(), None, "one gap is not enough");
        assert_eq!(pace.wait(t + 1100 * MS), 250 * MS);
    }

    #[test]
    fn reads_often_only_when_a_block_is_due() {
        let t = Instant::now();
        let pace = learned(250 * MS, 1000 * MS, t);
        assert_eq!(pace.block_time(), Some(1000 * MS));
        // Just after a head: wait, at most `poll` at a time.
        assert_eq!(pace.wait(t + 10 * MS), 250 * MS);
        assert_eq!(pace.wait(t + 900 * MS), 75 * MS);
        // Due: every 1/40 of a block.
        assert_eq!(pace.wait(t + 980 * MS), 25 * MS);
        assert_eq!(pace.wait(t + 1200 * MS), 25 * MS);
        // Late by more than a quarter block: back to `poll`.
        assert_eq!(pace.wait(t + 1300 * MS), 250 * MS);
    }

    #[test]
    fn long_blocks_keep_the_configured_poll() {
        let t = Instant::now();
        // 12 s blocks: 1/40 is 300 ms, not faster than the poll.
        let pace = learned(250 * MS, 12_000 * MS, t);
        assert_eq!(pace.wait(t + 11_900 * MS), 250 * MS);
        // 2 s blocks: 50 ms near the block.
        let pace = learned(250 * MS, 2000 * MS, t);
        assert_eq!(pace.wait(t + 1990 * MS), 50 * MS);
    }

    #[test]
    fn the_shortest_recent_gap_is_the_block_time() {
        let t = Instant::now();
        let mut pace = Pace::new(250 * MS);
        // A head seen 200 ms late: its gap is longer, the next one shorter.
        for at in [0, 1000, 2200, 3000, 4000] {
            pace.saw(t + at * MS, 1);
        }
        assert_eq!(pace.block_time(), Some(800 * MS));
        // Several blocks at once teach nothing about one block's time.
        let mut pace = Pace::new(250 * MS);
        pace.saw(t, 1);
        pace.saw(t + 1000 * MS, 3);
        pace.saw(t + 2000 * MS, 2);
        assert_eq!(pace.block_time(), None);
        // Old gaps leave: a chain that slowed down is followed.
        let mut pace = learned(250 * MS, 500 * MS, t);
        for i in 1..=GAPS as u32 {
            pace.saw(t + 2000 * MS * i, 1);
        }
        assert_eq!(pace.block_time(), Some(2000 * MS));
    }
}
