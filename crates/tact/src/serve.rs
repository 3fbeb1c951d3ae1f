//! What every long-running command starts beside its job: signal handling and the HTTP
//! endpoints (`/metrics`, `/healthz`, `/readyz`, and the read-only admin endpoint).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tact_edge::EdgeError;
use tact_store::{RocksOptions, RocksStore, StateStore};
use tact_telemetry::{CustomerLookup, Exporter, Health};

/// SIGINT/SIGTERM set `stop`; a second signal exits at once.
pub async fn wait_for_signals(stop: Arc<AtomicBool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    for _ in 0..2 {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if stop.swap(true, Ordering::SeqCst) {
            eprintln!("second signal: exiting without draining (the outbox re-sends on restart)");
            std::process::exit(130);
        }
        tracing::info!("stop requested; draining");
    }
}

/// SIGINT/SIGTERM set `stop`, on a thread of their own (for commands without HTTP endpoints).
pub fn install_ctrl_c(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(wait_for_signals(stop));
    });
}

async fn until(stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts the HTTP endpoints and signal handling on a small runtime of their own.
pub fn start_edges(
    listen: SocketAddr,
    exporter: Arc<Exporter>,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
) -> Result<tokio::runtime::Runtime, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("tact-edge")
        .build()
        .map_err(|e| format!("cannot start the HTTP runtime: {e}"))?;
    let (addr, _) = rt
        .block_on(tact_telemetry::serve(
            listen,
            exporter,
            health,
            until(stop.clone()),
        ))
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    tracing::info!(%addr, "serving /metrics /healthz /readyz");
    rt.spawn(wait_for_signals(stop));
    Ok(rt)
}

/// Serves the read-only admin endpoint on `rt`.
pub fn start_admin(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    lookup: CustomerLookup,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let (bound, _) = rt
        .block_on(tact_telemetry::serve_admin(addr, lookup, until(stop)))
        .map_err(|e| format!("cannot listen on {addr} (http.admin_listen): {e}"))?;
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "the admin endpoint serves personal data beyond this host; put an authenticating proxy in front of it");
    }
    tracing::info!(%bound, "serving read-only /customers/{{id}}");
    Ok(())
}

/// The exit code of an edge error: 3 setup, 4 fatal.
pub fn exit_code(e: &EdgeError) -> std::process::ExitCode {
    crate::run::finish(match e {
        EdgeError::Setup(_) => 3,
        EdgeError::Fatal(_) => 4,
    })
}

/// Opens the state directory; on failure says why and gives the exit code (3, a setup problem).
pub fn open_store(
    dir: &std::path::Path,
    block_cache_bytes: usize,
    compression: tact_store::Compression,
) -> Result<Arc<dyn StateStore>, std::process::ExitCode> {
    let opts = RocksOptions {
        block_cache_bytes,
        compression,
        ..RocksOptions::default()
    };
    match RocksStore::open(dir, &opts) {
        Ok(s) => Ok(Arc::new(s)),
        Err(e) => {
            eprintln!("error: {e}");
            Err(std::process::ExitCode::from(3))
        }
    }
}
