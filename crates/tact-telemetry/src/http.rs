//! `/metrics`, `/healthz` and `/readyz`; and the read-only admin endpoint `/customers/{id}`.

use crate::Exporter;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the probes report. Written by the pipeline, read by the HTTP server.
#[derive(Debug)]
pub struct Health {
    last_progress_ms: AtomicI64,
    /// The poll loop must progress within this long to count as alive.
    liveness_window_ms: i64,
    /// The consumer group answered: this instance has its (possibly empty) share of partitions.
    pub assigned: AtomicBool,
    pub state_ready: AtomicBool,
    /// Owned partitions whose state is still being restored from the changelog.
    pub restoring: AtomicUsize,
    /// The input partitions this instance owns (for the admin endpoint's "not here" answer).
    pub partitions: std::sync::Mutex<Vec<i32>>,
    pub draining: AtomicBool,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Health {
    pub fn new(liveness_window_ms: i64) -> Health {
        Health {
            last_progress_ms: AtomicI64::new(now_ms()),
            liveness_window_ms,
            assigned: AtomicBool::new(false),
            state_ready: AtomicBool::new(false),
            restoring: AtomicUsize::new(0),
            partitions: std::sync::Mutex::new(Vec::new()),
            draining: AtomicBool::new(false),
        }
    }

    /// Called by the poll loop on every turn.
    pub fn progressed(&self) {
        self.last_progress_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn alive(&self) -> bool {
        now_ms() - self.last_progress_ms.load(Ordering::Relaxed) <= self.liveness_window_ms
    }

    pub fn ready(&self) -> bool {
        self.assigned.load(Ordering::Relaxed)
            && self.state_ready.load(Ordering::Relaxed)
            && self.restoring.load(Ordering::Relaxed) == 0
            && !self.draining.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Exporter>,
    health: Arc<Health>,
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.alive() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "poll loop stalled\n")
    }
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let h = &s.health;
    if h.ready() {
        return (StatusCode::OK, "ready\n".to_owned());
    }
    let restoring = h.restoring.load(Ordering::Relaxed);
    let why = if h.draining.load(Ordering::Relaxed) {
        "draining".to_owned()
    } else if !h.state_ready.load(Ordering::Relaxed) {
        "state store not ready".to_owned()
    } else if !h.assigned.load(Ordering::Relaxed) {
        "no partitions assigned yet".to_owned()
    } else {
        format!("restoring {restoring} partition(s) from the changelog")
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: {why}\n"),
    )
}

/// Binds `addr` and serves until `shutdown` resolves. Returns the bound address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Exporter>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health });
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok((bound, task))
}

/// Looks a customer up for the admin endpoint: `Ok(Ok(json))` for a customer held here,
/// `Ok(Err(json))` for one this instance holds nothing about (the body says which partitions it
/// owns and where else to look), `Err` when the store cannot answer.
pub type CustomerLookup = Arc<dyn Fn(&str) -> Result<Result<String, String>, String> + Send + Sync>;

async fn customer_handler(
    State(lookup): State<CustomerLookup>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> impl IntoResponse {
    let json = [(header::CONTENT_TYPE, "application/json")];
    let answer = tokio::task::spawn_blocking(move || lookup(&id)).await;
    match answer {
        Ok(Ok(Ok(body))) => (StatusCode::OK, json, body),
        // Nothing held here is an answer too (a subject access request for an unknown person, or
        // one whose partition another instance owns).
        Ok(Ok(Err(body))) => (StatusCode::NOT_FOUND, json, body),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json,
            format!("{{\"error\":{:?}}}", e),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json,
            format!("{{\"error\":{:?}}}", e.to_string()),
        ),
    }
}

/// The read-only admin endpoint: `GET /customers/{id}` answers "what do you know about me, and
/// why" with the JSON of `tact inspect`. There is no route that changes anything: changes go
/// through the profile-commands topic, where they are ordered and audited.
pub async fn serve_admin(
    addr: SocketAddr,
    lookup: CustomerLookup,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/customers/{id}", get(customer_handler))
        .with_state(lookup);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "admin HTTP server failed");
        }
    });
    Ok((bound, task))
}
