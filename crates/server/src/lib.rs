//! `server`: herd's OpenAI-compatible HTTP API over the engine's continuously batching
//! scheduler (`engine::serve`). It owns the wire format (request parsing, checks, OpenAI error
//! objects, server-sent events), authentication, stop strings, `n` choices, logprobs,
//! metrics and graceful shutdown; the engine owns batching, KV blocks and sampling.

#![forbid(unsafe_code)]

mod api;
pub mod client;
mod error;
mod generate;
mod metrics;
mod routes;
mod stop;

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use engine::serve::{Scheduler, SchedulerConfig, SchedulerStats};
use engine::{ChatSettings, TokenizerBox};
use model::Llama;

pub use error::ApiError;
pub use metrics::Metrics;
pub use stop::{Released, StopBuffer};

/// Server settings besides the scheduler's.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The id `/v1/models` lists and requests must name.
    pub model_name: String,
    /// Requests must carry `Authorization: Bearer KEY` when set.
    pub api_key: Option<String>,
    /// Most choices (`n`) per request.
    pub max_n: usize,
    /// How long running requests may go on after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Largest request body accepted (bytes).
    pub max_body_bytes: usize,
}

impl ServerConfig {
    pub fn new(model_name: impl Into<String>) -> Self {
        ServerConfig {
            model_name: model_name.into(),
            api_key: None,
            max_n: 16,
            shutdown_grace: Duration::from_secs(10),
            max_body_bytes: 4 << 20,
        }
    }
}

/// Everything the handlers share.
pub(crate) struct AppState {
    scheduler: Mutex<Option<Scheduler>>,
    pub(crate) tok: TokenizerBox,
    pub(crate) chat: Result<ChatSettings, String>,
    pub(crate) add_bos: bool,
    pub(crate) stop_ids: Vec<u32>,
    pub(crate) n_ctx: usize,
    pub(crate) cfg: ServerConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) created: u64,
    pub(crate) shutting_down: AtomicBool,
    seeds: AtomicU64,
}

impl AppState {
    /// Runs `f` with the scheduler, or `None` once it has been shut down.
    pub(crate) fn with_scheduler<R>(&self, f: impl FnOnce(Option<&Scheduler>) -> R) -> R {
        let guard = self.scheduler.lock().unwrap_or_else(|e| e.into_inner());
        f(guard.as_ref())
    }

    /// A seed for a request that named none: different on every call.
    pub(crate) fn fresh_seed(&self) -> u64 {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let c = self.seeds.fetch_add(1, Ordering::Relaxed);
        // splitmix64 of the clock and a counter.
        let mut z = t ^ c.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A server ready to listen.
pub struct Server {
    state: Arc<AppState>,
}

impl Server {
    /// Starts the scheduler on `model` and reads the chat settings, BOS policy and stop ids of
    /// the model at `model_path` (whose tokenizer is `tok`).
    pub fn new(
        model: Arc<Llama>,
        tok: TokenizerBox,
        model_path: &Path,
        sched: SchedulerConfig,
        cfg: ServerConfig,
    ) -> Result<Server, String> {
        let chat = engine::chat_settings(model_path, tok.as_ref()).map_err(|e| e.to_string());
        let add_bos =
            engine::prompt_add_bos(model_path, tok.as_ref()).map_err(|e| e.to_string())?;
        let stop_ids = engine::stop_ids(model_path, tok.as_ref()).map_err(|e| e.to_string())?;
        if cfg.max_n == 0 {
            return Err("the most choices per request must be at least 1".into());
        }
        let n_ctx = sched.n_ctx;
        let scheduler = Scheduler::spawn(model, sched).map_err(|e| e.to_string())?;
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Server {
            state: Arc::new(AppState {
                scheduler: Mutex::new(Some(scheduler)),
                tok,
                chat,
                add_bos,
                stop_ids,
                n_ctx,
                cfg,
                metrics: Arc::new(Metrics::default()),
                created,
                shutting_down: AtomicBool::new(false),
                seeds: AtomicU64::new(0),
            }),
        })
    }

    /// The scheduler's figures (`None` after shutdown).
    pub fn stats(&self) -> Option<SchedulerStats> {
        self.state.with_scheduler(|s| s.map(Scheduler::stats))
    }

    /// A handle to read scheduler figures while the server runs.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            state: self.state.clone(),
        }
    }

    /// Serves on `listener` until `shutdown` resolves; then stops accepting, lets running
    /// requests finish within the grace period (cancelling the rest), and returns.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let app = routes::router(state.clone());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let (sig_tx, sig_rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let signal = async move {
            shutdown.await;
            st.shutting_down.store(true, Ordering::SeqCst);
            let _ = sig_tx.send(());
            let sched = st
                .scheduler
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            let grace = st.cfg.shutdown_grace;
            // Stopping the scheduler blocks until its thread has ended; running requests get
            // their last events meanwhile and their responses complete.
            std::thread::spawn(move || {
                if let Some(s) = sched {
                    s.shutdown(grace);
                }
                let _ = done_tx.send(());
            });
        };
        let serving = axum::serve(listener, app).with_graceful_shutdown(signal);
        let grace = state.cfg.shutdown_grace;
        let served = async move {
            serving.await?;
            let _ = done_rx.await;
            Ok::<(), std::io::Error>(())
        };
        let mut served = std::pin::pin!(served);
        tokio::select! {
            r = &mut served => return r,
            _ = sig_rx => {}
        }
        // A client that never reads its response cannot hold the process past the bound.
        match tokio::time::timeout(grace + Duration::from_secs(5), served).await {
            Ok(r) => r,
            Err(_) => Ok(()),
        }
    }
}

/// Read access to a running server's scheduler figures.
#[derive(Clone)]
pub struct ServerHandle {
    state: Arc<AppState>,
}

impl ServerHandle {
    pub fn stats(&self) -> Option<SchedulerStats> {
        self.state.with_scheduler(|s| s.map(Scheduler::stats))
    }
}
