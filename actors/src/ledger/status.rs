//! A settlement's status in the ledger, as a type; the strings it is stored as.

/// Where a settlement is: `Pending -> Submitted -> Mined -> Confirmed`, or `Failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Claimed; nothing sent yet (unless its transaction hash is written: then maybe sent).
    Pending,
    /// Broadcast; not mined yet.
    Submitted,
    /// Mined and successful, but not yet `confirmations` blocks deep: a reorg may still take
    /// it out of the chain (the finality watch re-sends it, or resolves it from the chain).
    Mined,
    /// Mined, and deep enough.
    Confirmed,
    /// Reverted, or nothing was sent (no transaction hash: the payment may be claimed again).
    Failed,
}

impl Status {
    /// As stored in `settlements.status`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Submitted => "submitted",
            Status::Mined => "mined",
            Status::Confirmed => "confirmed",
            Status::Failed => "failed",
        }
    }

    /// A stored status (`None`: not one of ours).
    pub fn parse(s: &str) -> Option<Self> {
        [
            Status::Pending,
            Status::Submitted,
            Status::Mined,
            Status::Confirmed,
            Status::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }

    /// The outcome of a settlement as its client sees it: mined counts (the money moved).
    pub fn is_success(self) -> bool {
        matches!(self, Status::Confirmed | Status::Mined)
    }
}

impl From<Status> for sea_orm::Value {
    fn from(status: Status) -> Self {
        status.as_str().into()
    }
}

impl PartialEq<Status> for String {
    fn eq(&self, status: &Status) -> bool {
        self == status.as_str()
    }
}

/// The stored strings of `Status`, for readers of the table.
pub const PENDING: &str = Status::Pending.as_str();
pub const SUBMITTED: &str = Status::Submitted.as_str();
pub const MINED: &str = Status::Mined.as_str();
pub const CONFIRMED: &str = Status::Confirmed.as_str();
pub const FAILED: &str = Status::Failed.as_str();

/// `Status::is_success` of a stored status.
pub fn is_success(status: &str) -> bool {
    Status::parse(status).is_some_and(Status::is_success)
}
