//! The x402 protocol, with no I/O: usable by a facilitator and by a client.
//!
//! A facilitator request flows through it like this:
//! 1. `proto::parse_facilitator_request` reads a `/verify` or `/settle` body (x402 v1 or v2,
//!    payload as an object or base64) into one version-independent `proto::PaymentRequest`,
//!    or says why the body is malformed.
//! 2. `exact::evm::verify_offchain` runs the named checks of the `exact` scheme on EVM
//!    (EIP-3009 `transferWithAuthorization`, EIP-712 signatures) in the spec's order, each
//!    failing with one `Reason`.
//! 3. The caller does the on-chain part (simulation, balance, nonce state) with the call
//!    encodings in `exact::evm::IEIP3009`.
//!
//! `permit2` does the same for Permit2 payments (`exact` via Permit2, `upto`, and the
//! `eip2612GasSponsoring` extension).
//!
//! `network` maps v1 names, CAIP-2 ids and chain ids, with each network's USDC; `svm` does the
//! same for Solana clusters, and `exact::svm` checks a Solana payment's transaction.

pub mod batch_settlement;
pub mod exact;
pub mod network;
pub mod permit2;
pub mod proto;
mod reason;
pub mod svm;

pub use reason::Reason;
