//! Multicall3 (https://github.com/mds1/multicall, deployed at one address on every chain that
//! has it): the one contract the facilitator calls besides tokens and proxies. A smart
//! wallet's first payment deploys the wallet and pays in one `aggregate3`; a batch of payments
//! settles as one `aggregate3`. Its address is a network setting
//! (`networks.<id>.multicall3_address`) defaulting to [`MULTICALL3`].

use alloy::primitives::{address, Address};
use alloy::sol;

/// Multicall3's canonical address, the same on every chain where it is deployed.
pub const MULTICALL3: Address = address!("0xcA11bde05977b3631167028862bE2a173976CA11");

sol! {
    /// Multicall3's batch entry point.
    interface IMulticall3 {
        struct Call3 {
            address target;
            bool allowFailure;
            bytes callData;
        }
        struct Result {
            bool success;
            bytes returnData;
        }
        function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory returnData);
    }
}
