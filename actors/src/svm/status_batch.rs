//! The status reads of the transactions settles wait for, batched: a settle asking for its
//! transaction's status joins the batch being gathered, and one `getSignatureStatuses` (recent
//! statuses, up to 256 signatures a call) answers everyone in it. Many settles in flight then
//! cost the node a few calls per poll instead of one each. The batch is sent by a task of its
//! own, so a settle dropped while waiting (a client gone) never strands the others.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::{SignatureStatus, SvmRpc, SvmRpcError};

/// How long a batch gathers before it is sent.
const GATHER: Duration = Duration::from_millis(25);
/// The most signatures `getSignatureStatuses` takes in one call.
const PER_CALL: usize = 256;

type Answer = Result<Option<SignatureStatus>, SvmRpcError>;

#[derive(Default)]
struct Gathering {
    /// A send task is gathering this batch.
    open: bool,
    waiting: Vec<(String, oneshot::Sender<Answer>)>,
}

#[derive(Clone, Default)]
pub struct StatusBatch {
    gathering: Arc<Mutex<Gathering>>,
}

impl StatusBatch {
    /// `signature`'s status from the node's recent statuses, read in the next batch.
    pub async fn recent_status(&self, rpc: &SvmRpc, signature: &str) -> Answer {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut g = self.gathering.lock().unwrap_or_else(|e| e.into_inner());
            g.waiting.push((signature.to_owned(), tx));
            !std::mem::replace(&mut g.open, true)
        };
        if start {
            let (gathering, rpc) = (self.gathering.clone(), rpc.clone());
            tokio::spawn(async move {
                tokio::time::sleep(GATHER).await;
                let batch = {
                    let mut g = gathering.lock().unwrap_or_else(|e| e.into_inner());
                    g.open = false;
                    std::mem::take(&mut g.waiting)
                };
                send(&rpc, batch).await;
            });
        }
        rx.await
            .unwrap_or_else(|_| Err(SvmRpcError::Unavailable("status batch dropped".into())))
    }
}

async fn send(rpc: &SvmRpc, mut batch: Vec<(String, oneshot::Sender<Answer>)>) {
    while !batch.is_empty() {
        let rest = batch.split_off(batch.len().min(PER_CALL));
        let signatures: Vec<&str> = batch.iter().map(|(s, _)| s.as_str()).collect();
        match rpc.statuses(&signatures, false).await {
            Ok(statuses) => {
                for ((_, tx), status) in batch.drain(..).zip(statuses) {
                    let _ = tx.send(Ok(status));
                }
            }
            Err(e) => {
                for (_, tx) in batch.drain(..) {
                    let _ = tx.send(Err(e.clone()));
                }
            }
        }
        batch = rest;
    }
}
