//! `surfnet`: a local, offline Solana cluster (surfpool-core's surfnet on LiteSVM) answering
//! Solana JSON-RPC on 127.0.0.1, for the facilitator's tests and `dev`. It runs the real
//! on-chain programs: SPL Token (p-token under the Tokenkeg address), Token-2022, the
//! associated-token-account program, Memo and address lookup tables.
//!
//! ```text
//! surfnet [--port N] [--slot-time MS] [--detached]
//! ```
//! - `--port 0` (the default; or env `PORT`) picks a free port. The WebSocket RPC takes another
//!   free port (or N+1 when N is given).
//! - On stdout, exactly one line once the RPC answers:
//!   `READY http://127.0.0.1:PORT ws=ws://127.0.0.1:WSPORT after 240ms`.
//!   Nothing else is written to stdout; errors go to stderr.
//! - It exits when its stdin reaches end of file (the parent closed it, or died: a test that
//!   panics or is killed does not leak a cluster), and on SIGTERM/SIGINT (their default action:
//!   nothing here installs a handler). `--detached` stops watching stdin (for a shell's
//!   background job whose stdin is /dev/null).
//!
//! No remote datasource (offline), no instruction profiling (it would replay every transaction
//! per instruction), slots of 400 ms as on mainnet so blockhashes expire after ~60 s.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use surfpool_core::surfnet::svm::{SurfnetSvm, SurfnetSvmConfig};
use surfpool_types::{RpcConfig, SimnetConfig, SimnetEvent, SurfpoolConfig};

struct Args {
    port: u16,
    slot_time: u64,
    detached: bool,
}

fn usage(msg: &str) -> ! {
    eprintln!("surfnet: {msg}\nusage: surfnet [--port N] [--slot-time MS] [--detached]");
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut args = Args {
        port: std::env::var("PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0),
        slot_time: 400,
        detached: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| usage(&format!("{name} needs a number")))
        };
        match a.as_str() {
            "--port" => {
                args.port = u16::try_from(value("--port")).unwrap_or_else(|_| usage("bad port"))
            }
            "--slot-time" => args.slot_time = value("--slot-time").max(1),
            "--detached" => args.detached = true,
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    args
}

/// Two distinct free ports on 127.0.0.1 (both listeners held while the second is chosen).
fn free_ports() -> std::io::Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

fn main() {
    let args = parse_args();
    let t0 = Instant::now();
    let (port, ws_port) = if args.port == 0 {
        free_ports().unwrap_or_else(|e| {
            eprintln!("surfnet: no free port: {e}");
            std::process::exit(1)
        })
    } else {
        (args.port, args.port.wrapping_add(1))
    };

    if !args.detached {
        // EOF on stdin (parent closed the pipe, or exited): stop.
        std::thread::spawn(|| {
            let mut buf = [0u8; 256];
            let mut stdin = std::io::stdin();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => std::process::exit(0),
                    Ok(_) => {}
                }
            }
        });
    }

    let config = SurfpoolConfig {
        simnets: vec![SimnetConfig {
            offline_mode: true,
            remote_rpc_url: None,
            slot_time: args.slot_time,
            instruction_profiling_enabled: false,
            ..SimnetConfig::default()
        }],
        rpc: RpcConfig {
            bind_host: "127.0.0.1".into(),
            bind_port: port,
            ws_port,
            ..RpcConfig::default()
        },
        ..SurfpoolConfig::default()
    };
    let (svm, events_rx, geyser_rx) = SurfnetSvm::new(SurfnetSvmConfig {
        slot_time: args.slot_time,
        instruction_profiling_enabled: false,
        ..SurfnetSvmConfig::default()
    })
    .unwrap_or_else(|e| {
        eprintln!("surfnet: svm: {e:?}");
        std::process::exit(1)
    });
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async move {
            let result =
                surfpool_core::start_local_surfnet(svm, config, cmd_tx, cmd_rx, geyser_rx).await;
            match result {
                Err(e) => {
                    eprintln!("surfnet: {e}");
                    std::process::exit(1);
                }
                Ok(()) => std::process::exit(0),
            }
        });
    });

    // Drain the event channel for the life of the process (it is unbounded).
    let verbose = std::env::var_os("SURFNET_LOG").is_some();
    loop {
        match events_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(SimnetEvent::CoreStarted(_)) => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "READY http://127.0.0.1:{port} ws=ws://127.0.0.1:{ws_port} after {}ms",
                    t0.elapsed().as_millis()
                );
                let _ = out.flush();
            }
            Ok(SimnetEvent::ErrorLog(_, m)) => eprintln!("surfnet: error: {m}"),
            Ok(SimnetEvent::Aborted(m)) => {
                eprintln!("surfnet: aborted: {m}");
                std::process::exit(1);
            }
            Ok(SimnetEvent::Shutdown) => std::process::exit(0),
            Ok(other) if verbose => eprintln!("surfnet: {other:?}"),
            Ok(_) => {}
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                eprintln!("surfnet: event channel closed");
                std::process::exit(1);
            }
        }
    }
}
