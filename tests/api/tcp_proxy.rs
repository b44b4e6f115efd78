//! A TCP proxy that injects network faults between a client and a server (the facilitator and
//! its RPC node), for real: the client sees a frozen, refusing or slow peer, not a mock.
//!
//! - `pass()`: bytes flow both ways.
//! - `freeze()`: nothing flows; connections stay open and new ones are accepted, as with a
//!   node whose process is stopped (SIGSTOP). Bytes already read wait and flow on `pass()`.
//! - `refuse()`: open connections are reset and new ones are reset on accept, as with a node
//!   that is down.
//! - `delay(d)`: every chunk from the client reaches the server `d` late (chunks read together
//!   arrive together), so each request/response round trip takes `d` longer.
//!
//! Every byte the client sends is also kept (`sent()`), so a test can read which requests
//! reached the server (e.g. the JSON-RPC calls a facilitator made about a payment).
//!
//! Self-contained (tokio only), so other test binaries and tools can include it with
//! `#[path = ".../tcp_proxy.rs"] mod tcp_proxy;`.

#![allow(dead_code)] // each user takes the switches it needs

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Freeze,
    Refuse,
    Delay(Duration),
}

pub struct TcpProxy {
    addr: SocketAddr,
    fault: watch::Sender<Fault>,
    accept: JoinHandle<()>,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl TcpProxy {
    /// Listen on a free port of 127.0.0.1 and forward to `upstream` (`host:port`, or a URL
    /// such as `http://127.0.0.1:8545`).
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("proxy address");
        let (fault, _) = watch::channel(Fault::Pass);
        let faults = fault.clone();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let record = sent.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *faults.borrow() == Fault::Refuse {
                    reset(client);
                    continue;
                }
                tokio::spawn(connection(
                    client,
                    upstream.clone(),
                    faults.subscribe(),
                    record.clone(),
                ));
            }
        });
        Self {
            addr,
            fault,
            accept,
            sent,
        }
    }

    /// Every byte clients have sent through the proxy so far, in the order read (connections
    /// interleaved by chunk).
    pub fn sent(&self) -> Vec<u8> {
        self.sent.lock().unwrap().clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: where the client should connect.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }

    pub fn pass(&self) {
        self.set(Fault::Pass)
    }

    pub fn freeze(&self) {
        self.set(Fault::Freeze)
    }

    pub fn refuse(&self) {
        self.set(Fault::Refuse)
    }

    pub fn delay(&self, d: Duration) {
        self.set(Fault::Delay(d))
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Ends every connection task (they watch the fault switch).
        self.fault.send_replace(Fault::Refuse);
    }
}

/// Close with a TCP reset (RST), not a graceful FIN: what a client of a dead port sees.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn connection(
    client: TcpStream,
    upstream: String,
    mut faults: watch::Receiver<Fault>,
    record: Arc<Mutex<Vec<u8>>>,
) {
    let Ok(server) = TcpStream::connect(&upstream).await else {
        reset(client);
        return;
    };
    for s in [&client, &server] {
        let _ = s.set_nodelay(true);
        // Every close is a reset: a refused link must not look like a clean end of stream.
        let _ = s.set_zero_linger();
    }
    let (client_r, client_w) = client.into_split();
    let (server_r, server_w) = server.into_split();
    let up = link(client_r, server_w, faults.clone(), Some(record));
    let down = link(server_r, client_w, faults.clone(), None);
    tokio::select! {
        _ = faults.wait_for(|f| *f == Fault::Refuse) => {}
        _ = up => {}
        _ = down => {}
    }
    // Dropping the halves resets both sockets.
}

/// One direction: a reader that stamps each chunk, a writer that delivers it when due. The
/// client's direction (`record`) is the one delayed, and kept.
async fn link(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    faults: watch::Receiver<Fault>,
    record: Option<Arc<Mutex<Vec<u8>>>>,
) {
    let delayed = record.is_some();
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let mut read_faults = faults.clone();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if read_faults.wait_for(|f| *f != Fault::Freeze).await.is_err() {
                return;
            }
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if let Some(record) = &record {
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    };
    let mut write_faults = faults;
    let writer = async move {
        while let Some((read_at, bytes)) = rx.recv().await {
            let fault = match write_faults.wait_for(|f| *f != Fault::Freeze).await {
                Ok(f) => *f,
                Err(_) => return,
            };
            if let (Fault::Delay(d), true) = (fault, delayed) {
                tokio::time::sleep_until(read_at + d).await;
            }
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
