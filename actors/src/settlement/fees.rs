//! The fees and gas limit of a settlement transaction (EIP-1559): the node's estimate under
//! the network's cap, a replacement's bump, and the bound on a transaction's gas.

use std::time::Duration;

use alloy::providers::{Provider, RootProvider};

use super::{BroadcastError, Broadcasted};

/// Fee policy of one network.
#[derive(Debug, Clone, Copy)]
pub struct FeePolicy {
    /// Upper bound of `maxFeePerGas`, wei.
    pub max_fee_per_gas_cap: u128,
    /// `networks.<id>.max_gas_per_settlement`: no settlement transaction's gas limit is above
    /// this (a batch's: this times the payments it carries). A transaction's own limit is the
    /// node's estimate of its call plus a margin (`gas_limit_for`);
    /// `transferWithAuthorization` uses 81–103k.
    pub max_gas_per_settlement: u64,
    /// How long an estimate is reused.
    pub estimate_ttl: Duration,
}

/// The margin over a call's gas estimate: a fifth, plus this. The estimate is made against the
/// latest block, and the transaction runs in a later one: a payee's balance slot written
/// meanwhile, or a cold slot, moves the cost by a few thousand gas.
pub const GAS_MARGIN: u64 = 10_000;

impl FeePolicy {
    /// The gas limit of a transaction whose call the node estimated at `estimate` gas:
    /// `estimate + estimate / 5 + GAS_MARGIN`; `None` when that passes
    /// `max_gas_per_settlement` (the settlement is refused, nothing is sent).
    pub fn gas_limit_for(&self, estimate: u64) -> Option<u64> {
        let limit = estimate
            .saturating_add(estimate / 5)
            .saturating_add(GAS_MARGIN);
        (limit <= self.max_gas_per_settlement).then_some(limit)
    }
}

impl Default for FeePolicy {
    fn default() -> Self {
        Self {
            max_fee_per_gas_cap: 500_000_000_000, // 500 gwei
            max_gas_per_settlement: 300_000,
            estimate_ttl: Duration::from_secs(3),
        }
    }
}

/// Fees of a replacement: at least 12.5% above the previous ones (geth and anvil want +10% on
/// both fees to replace a pooled transaction of the same nonce).
pub(super) fn bumped(fee: u128) -> u128 {
    fee + fee / 8 + 1
}

/// The fees a new settlement transaction would be signed with now (the node's estimate under
/// the network's cap): a smart wallet's payment is simulated with them.
pub async fn fees_now(
    provider: &RootProvider,
    policy: &FeePolicy,
) -> Result<(u128, u128), BroadcastError> {
    let (max_fee, priority) = estimate_fees(provider).await?;
    fees_to_send(max_fee, priority, None, policy)
}

/// The node's EIP-1559 estimate: (maxFeePerGas, maxPriorityFeePerGas).
pub(super) async fn estimate_fees(provider: &RootProvider) -> Result<(u128, u128), BroadcastError> {
    let est = provider
        .estimate_eip1559_fees()
        .await
        .map_err(|e| BroadcastError::NotSent(format!("fee estimate: {e}")))?;
    Ok((est.max_fee_per_gas, est.max_priority_fee_per_gas))
}

/// The fees to sign with: the estimate, bumped past the replaced transaction's, under the cap.
pub(super) fn fees_to_send(
    max_fee: u128,
    priority: u128,
    replacing: Option<&Broadcasted>,
    policy: &FeePolicy,
) -> Result<(u128, u128), BroadcastError> {
    let (max_fee, priority) = match replacing {
        Some(old) => (
            max_fee.max(bumped(old.max_fee_per_gas)),
            priority.max(bumped(old.max_priority_fee_per_gas)),
        ),
        None => (max_fee, priority),
    };
    let max_fee_per_gas = max_fee.min(policy.max_fee_per_gas_cap);
    let max_priority_fee_per_gas = priority.min(max_fee_per_gas);
    if let Some(old) = replacing {
        if max_fee_per_gas < bumped(old.max_fee_per_gas) {
            return Err(BroadcastError::NotSent(
                "fee cap reached: cannot replace".into(),
            ));
        }
    }
    Ok((max_fee_per_gas, max_priority_fee_per_gas))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{Bytes, B256};

    fn sent(max_fee: u128, priority: u128) -> Broadcasted {
        Broadcasted {
            tx_hash: B256::ZERO,
            signer: Default::default(),
            nonce: 3,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: priority,
            gas_limit: 100_000,
            raw: Bytes::new(),
        }
    }

    #[test]
    fn a_gas_limit_is_the_estimate_plus_margin_within_the_cap() {
        let policy = FeePolicy {
            max_gas_per_settlement: 130_000,
            ..FeePolicy::default()
        };
        // transferWithAuthorization to a new payee: ~103k.
        assert_eq!(policy.gas_limit_for(100_000), Some(130_000));
        assert_eq!(policy.gas_limit_for(100_001), None);
        assert_eq!(policy.gas_limit_for(0), Some(GAS_MARGIN));
        assert_eq!(policy.gas_limit_for(u64::MAX), None);
    }

    #[test]
    fn a_new_transaction_takes_the_estimate_under_the_cap() {
        let policy = FeePolicy {
            max_fee_per_gas_cap: 100,
            ..FeePolicy::default()
        };
        assert_eq!(fees_to_send(50, 2, None, &policy).unwrap(), (50, 2));
        // Capped, and the tip never above the fee cap.
        assert_eq!(fees_to_send(500, 300, None, &policy).unwrap(), (100, 100));
    }

    #[test]
    fn a_replacement_bumps_both_fees_past_the_nodes_threshold() {
        let policy = FeePolicy::default();
        let old = sent(1_000, 100);
        let (max_fee, priority) = fees_to_send(900, 50, Some(&old), &policy).unwrap();
        // geth and anvil replace a pooled transaction only at +10% on both fees.
        assert!(max_fee >= old.max_fee_per_gas * 11 / 10);
        assert!(priority >= old.max_priority_fee_per_gas * 11 / 10);
        assert_eq!((max_fee, priority), (bumped(1_000), bumped(100)));
        // A higher estimate wins over the bump.
        assert_eq!(
            fees_to_send(5_000, 500, Some(&old), &policy).unwrap(),
            (5_000, 500)
        );
        assert_eq!(bumped(0), 1);
    }

    #[test]
    fn a_replacement_the_cap_cannot_bump_is_not_sent() {
        let policy = FeePolicy {
            max_fee_per_gas_cap: 1_100,
            ..FeePolicy::default()
        };
        let refused = fees_to_send(900, 50, Some(&sent(1_000, 100)), &policy);
        assert!(matches!(refused, Err(BroadcastError::NotSent(_))));
    }
}
