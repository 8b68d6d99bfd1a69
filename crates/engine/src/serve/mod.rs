//! Continuous batching: one scheduler thread drives the model for many requests at once.
//!
//! Requests wait in a bounded queue; at every step the scheduler admits what fits (a sequence
//! slot and KV blocks), runs one forward pass over every running sequence (each decoding
//! sequence's next token plus chunks of prompts still being read, up to `max_step_tokens`),
//! samples each sequence with its own seeded sampler and hands the events to the request's
//! sink. Full blocks of prompt tokens are kept in a prefix cache keyed by a chained content
//! hash, so a later request with the same prefix attaches them instead of computing them.
//!
//! A request's tokens depend only on the model, its prompt and its sampling settings: the
//! forward pass computes each row from that row alone, and each sequence samples from its own
//! generator.
//!
//! - `request.rs`: the public request, event and settings types and a running sequence's state;
//! - `prefix.rs`: the prefix cache (content hashes, reference counts, LRU eviction);
//! - `step.rs`: the scheduler loop.

mod prefix;
mod request;
mod step;

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{EngineError, KvSpec, Result};

pub use request::{
    Event, FinishReason, GenRequest, SamplingParams, TokenLogprobs, Usage, MAX_TOP_LOGPROBS,
};

/// Settings of a [`Scheduler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Running sequences at most.
    pub max_seqs: usize,
    /// Positions per sequence at most (prompt + generated).
    pub n_ctx: usize,
    /// Capacity of the KV block pool, in blocks of [`crate::DEFAULT_BLOCK_SIZE`] positions.
    pub kv_blocks: usize,
    pub kv_type: model::KvType,
    /// Tokens per forward step at most (decodes + prefill chunks).
    pub max_step_tokens: usize,
    /// Waiting requests at most; beyond it [`Scheduler::submit`] fails with
    /// [`SubmitError::QueueFull`].
    pub max_queue: usize,
}

/// Identifies a submitted request.
pub type RequestId = u64;

/// Why a request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the request queue is full")]
    QueueFull,
    #[error(
        "the prompt ({n_prompt} tokens) plus max_tokens ({max_tokens}) exceeds the context \
         of {n_ctx} positions"
    )]
    TooLong {
        n_prompt: usize,
        max_tokens: usize,
        n_ctx: usize,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("the scheduler is shutting down")]
    ShuttingDown,
}

/// A snapshot of the scheduler's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Requests waiting to be admitted (including preempted ones waiting to resume).
    pub queued: usize,
    /// Sequences in the running batch.
    pub running: usize,
    /// KV blocks held by running sequences.
    pub kv_blocks_used: usize,
    /// KV blocks not held by any sequence: never used, free, or cached prefixes that can be
    /// evicted.
    pub kv_blocks_free: usize,
    /// KV blocks kept only by the prefix cache (a part of `kv_blocks_free`).
    pub kv_blocks_cached: usize,
    /// Prompt tokens served from the prefix cache, over all requests.
    pub prefix_cache_hits: u64,
    /// Forward steps run.
    pub steps: u64,
    /// Prompt tokens of finished or running requests (cached ones included).
    pub tokens_in: u64,
    /// Tokens generated.
    pub tokens_out: u64,
    /// Sequences preempted (their blocks given back, to be recomputed later).
    pub preemptions: u64,
}

/// Where every event of a request goes, called from the scheduler thread; returns false when
/// nobody listens any more.
pub type Sink = Box<dyn FnMut(Event) -> bool + Send>;

/// A request waiting for admission.
struct Pending {
    id: RequestId,
    req: GenRequest,
    sink: Sink,
}

/// State shared by the handle and the scheduler thread.
struct Shared {
    queue: VecDeque<Pending>,
    cancels: Vec<RequestId>,
    /// Set by [`Scheduler::shutdown`]: no more intake; what runs gets until then to finish.
    deadline: Option<Instant>,
    next_id: RequestId,
    stats: SchedulerStats,
}

struct Inner {
    state: Mutex<Shared>,
    wake: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A sink that panicked poisons nothing we rely on: the state stays consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running scheduler: a thread that loops admit → build one batch → forward → sample → emit.
pub struct Scheduler {
    inner: Arc<Inner>,
    config: SchedulerConfig,
    vocab_size: usize,
    thread: Option<JoinHandle<()>>,
}

impl Scheduler {
    /// Checks `config` against `model` and starts the scheduler thread.
    pub fn spawn(model: Arc<model::Llama>, config: SchedulerConfig) -> Result<Scheduler> {
        let spec = KvSpec::new(&model.config, config.kv_type)?;
        let bad = |msg: String| Err(EngineError::Invalid(msg));
        if config.max_seqs == 0 || config.max_step_tokens == 0 || config.n_ctx == 0 {
            return bad(format!(
                "max_seqs, max_step_tokens and n_ctx must be at least 1 (got {}, {}, {})",
                config.max_seqs, config.max_step_tokens, config.n_ctx
            ));
        }
        if config.n_ctx > model.config.max_seq_len {
            return bad(format!(
                "a context of {} positions is longer than the model's {}",
                config.n_ctx, model.config.max_seq_len
            ));
        }
        if config.kv_blocks < spec.blocks_for(config.n_ctx) {
            return bad(format!(
                "{} KV blocks cannot hold one sequence of {} positions ({} blocks of {})",
                config.kv_blocks,
                config.n_ctx,
                spec.blocks_for(config.n_ctx),
                spec.block_size
            ));
        }
        let inner = Arc::new(Inner {
            state: Mutex::new(Shared {
                queue: VecDeque::new(),
                cancels: Vec::new(),
                deadline: None,
                next_id: 0,
                stats: SchedulerStats {
                    kv_blocks_free: config.kv_blocks,
                    ..SchedulerStats::default()
                },
            }),
            wake: Condvar::new(),
        });
        let vocab_size = model.config.vocab_size;
        let looper = step::Looper::new(model, config.clone(), spec, Arc::clone(&inner));
        let thread = std::thread::Builder::new()
            .name("herd-scheduler".into())
            .spawn(move || looper.run())
            .map_err(|e| EngineError::Invalid(format!("cannot start the scheduler thread: {e}")))?;
        Ok(Scheduler {
            inner,
            config,
            vocab_size,
            thread: Some(thread),
        })
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Queues `req`. `sink` gets every event of the request in order, called from the
    /// scheduler thread; it returns false when nobody listens any more, and the request is then
    /// cancelled and its blocks freed before the next step. It must not block.
    pub fn submit(
        &self,
        req: GenRequest,
        sink: Sink,
    ) -> std::result::Result<RequestId, SubmitError> {
        req.validate(self.vocab_size)?;
        let n_ctx = self.config.n_ctx;
        if req.prompt.len() + req.max_tokens > n_ctx {
            return Err(SubmitError::TooLong {
                n_prompt: req.prompt.len(),
                max_tokens: req.max_tokens,
                n_ctx,
            });
        }
        let mut s = self.inner.lock();
        if s.deadline.is_some() {
            return Err(SubmitError::ShuttingDown);
        }
        if s.queue.len() >= self.config.max_queue {
            return Err(SubmitError::QueueFull);
        }
        let id = s.next_id;
        s.next_id += 1;
        s.queue.push_back(Pending { id, req, sink });
        s.stats.queued += 1;
        drop(s);
        self.inner.wake.notify_one();
        Ok(id)
    }

    /// Cancels request `id` (its sink gets `Done` with [`FinishReason::Cancelled`]); unknown or
    /// finished ids are ignored.
    pub fn cancel(&self, id: RequestId) {
        self.inner.lock().cancels.push(id);
        self.inner.wake.notify_one();
    }

    /// The counters as of the last step.
    pub fn stats(&self) -> SchedulerStats {
        self.inner.lock().stats
    }

    /// Stops intake, lets queued and running requests finish within `grace`, cancels the rest
    /// and joins the scheduler thread.
    pub fn shutdown(mut self, grace: Duration) {
        self.stop(grace);
    }

    /// Stops intake now and gives queued and running requests `grace` to finish, without
    /// waiting (for a scheduler shared behind an `Arc`); [`Scheduler::shutdown`] or dropping
    /// the scheduler joins the thread. An earlier deadline stays.
    pub fn close(&self, grace: Duration) {
        {
            let mut s = self.inner.lock();
            let at = Instant::now() + grace;
            s.deadline = Some(s.deadline.map_or(at, |d| d.min(at)));
        }
        self.inner.wake.notify_one();
    }

    /// Whether the scheduler thread has ended (after [`Scheduler::close`], once every request
    /// has finished or been cancelled).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    fn stop(&mut self, grace: Duration) {
        self.close(grace);
        if let Some(t) = self.thread.take() {
            // The loop catches nothing itself; a panic there is reported by the thread.
            let _ = t.join();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop(Duration::ZERO);
        }
    }
}
