//! The `exact` scheme: pay exactly (v2) or at least (v1) the required amount.

pub mod evm;
pub mod svm;
