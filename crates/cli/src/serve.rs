//! `herd serve`: the OpenAI-compatible HTTP server on a model.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use engine::serve::SchedulerConfig;
use engine::KvType;
use server::{Server, ServerConfig};

/// Environment variable read for the API key when --api-key is not given.
pub const API_KEY_ENV: &str = "HERD_API_KEY";

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Model file or directory.
    pub model: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Positions per sequence, prompt and output together (default: the model's, at most 4096).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Sequences in the running batch at most.
    #[arg(long, default_value_t = 16)]
    pub max_seqs: usize,
    /// KV cache blocks of 16 positions in the pool (default: enough for --max-seqs full
    /// contexts).
    #[arg(long)]
    pub kv_blocks: Option<usize>,
    /// Requests waiting for a slot at most; beyond it requests get 429.
    #[arg(long, default_value_t = 256)]
    pub max_queue: usize,
    /// Tokens per forward step (decodes plus prompt chunks).
    #[arg(long, default_value_t = 512)]
    pub max_step_tokens: usize,
    /// Require `Authorization: Bearer KEY` (also read from HERD_API_KEY).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Tokenizer file, when the model carries none.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// The model id clients name (default: the model file's stem).
    #[arg(long)]
    pub model_name: Option<String>,
    /// Seconds running requests may continue after SIGINT/SIGTERM before they are cancelled.
    #[arg(long, default_value_t = 10)]
    pub shutdown_grace: u64,
}

/// The id a model is served under: its file (or directory) name without the extension.
fn model_id(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "model".into())
}

pub fn run(a: ServeArgs, kv_type: KvType) -> Result<()> {
    if a.max_seqs == 0 {
        bail!("--max-seqs must be at least 1");
    }
    let api_key = a
        .api_key
        .clone()
        .or_else(|| std::env::var(API_KEY_ENV).ok())
        .filter(|k| !k.is_empty());
    let loaded = engine::load(&a.model, a.tokenizer.as_deref())?;
    let Some(tok) = loaded.tokenizer else {
        bail!(
            "{}: the model carries no tokenizer; pass one with --tokenizer",
            a.model.display()
        );
    };
    let model_ctx = loaded.model.config.max_seq_len;
    let n_ctx = match a.ctx {
        Some(0) => bail!("--ctx must be at least 1"),
        Some(c) if c > model_ctx => {
            bail!("--ctx {c} is beyond the model's context of {model_ctx} positions")
        }
        Some(c) => c,
        None => model_ctx.min(4096),
    };
    let kv_blocks = a
        .kv_blocks
        .unwrap_or(a.max_seqs * n_ctx.div_ceil(engine::DEFAULT_BLOCK_SIZE));
    let sched = SchedulerConfig {
        max_seqs: a.max_seqs,
        n_ctx,
        kv_blocks,
        kv_type,
        max_step_tokens: a.max_step_tokens,
        max_queue: a.max_queue,
    };
    let name = a.model_name.clone().unwrap_or_else(|| model_id(&a.model));
    let mut cfg = ServerConfig::new(name.clone());
    cfg.api_key = api_key;
    cfg.shutdown_grace = Duration::from_secs(a.shutdown_grace);
    let auth = if cfg.api_key.is_some() {
        "API key required"
    } else {
        "no API key"
    };
    // The repacked copies (see `Weight::repack`), made before the first request: the
    // scheduler's steps take the tile path, which reads repacked rows where they lie (Q4_0 /
    // Q8_0 and the K-quants at AVX-512; K-quants below `in_place_tokens` at AVX2) or packs its panels from
    // them with less work than from stored rows, at every step, and never makes the copies
    // itself.
    let t0 = Instant::now();
    let repacked = loaded.model.repack_for_kernels();
    if repacked > 0 {
        eprintln!(
            "herd serve: {} of weights repacked for this CPU's kernels in {:.1} s",
            crate::bench::format_bytes(repacked),
            t0.elapsed().as_secs_f64()
        );
    }
    let server = Server::new(Arc::new(loaded.model), tok, &loaded.path, sched, cfg)
        .map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let addr = format!("{}:{}", a.host, a.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        eprintln!(
            "herd serve: {name} on http://{local} (ctx {n_ctx}, max-seqs {}, {kv_blocks} KV blocks, {auth})",
            a.max_seqs
        );
        server.serve(listener, shutdown_signal()).await?;
        eprintln!("herd serve: stopped");
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    eprintln!("herd serve: shutting down");
}
