//! The scheduler loop: admit → build one batch → forward → sample → emit, until shutdown.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use model::{Batch, Llama, MatmulPath};

use crate::{KvCache, KvSpec};

use super::prefix::{block_keys, PrefixCache};
use super::request::Sequence;
use super::{FinishReason, Inner, Pending, RequestId, SchedulerConfig, SchedulerStats};

/// Every step takes this path through the weights, whatever its size: then a sequence's logits
/// do not depend on what else is in the batch (the row and tile kernels of some weight types sum
/// in different orders; see `kernels::MatmulPath`). Tiles read each weight once per step for all
/// sequences.
const SERVE_MATMUL_PATH: MatmulPath = MatmulPath::Tiles;

/// The scheduler thread's state.
pub(super) struct Looper {
    model: Arc<Llama>,
    config: SchedulerConfig,
    inner: Arc<Inner>,
    kv: KvCache,
    prefix: PrefixCache,
    /// KV sequence ids not in use.
    free_slots: Vec<usize>,
    /// The running batch, oldest request first.
    running: Vec<Sequence>,
    /// Preempted sequences waiting to resume, oldest first; they go before the queue.
    preempted: VecDeque<Sequence>,
    stats: SchedulerStats,
}

/// What one pass over the shared state handed to the loop.
struct Intake {
    /// Queued requests to end as cancelled.
    dropped: Vec<Pending>,
    /// Running or preempted requests to cancel.
    cancels: Vec<RequestId>,
    /// The shutdown deadline has passed (or nothing is left to do after shutdown).
    stop: bool,
}

impl Looper {
    pub fn new(
        model: Arc<Llama>,
        config: SchedulerConfig,
        spec: KvSpec,
        inner: Arc<Inner>,
    ) -> Self {
        Looper {
            model,
            kv: KvCache::new(spec, config.kv_blocks),
            free_slots: (0..config.max_seqs).rev().collect(),
            config,
            inner,
            prefix: PrefixCache::default(),
            running: Vec::new(),
            preempted: VecDeque::new(),
            stats: SchedulerStats::default(),
        }
    }

    pub fn run(mut self) {
        loop {
            let intake = self.intake();
            for p in intake.dropped {
                let mut s = Sequence::new(p.id, p.req, p.sink);
                s.finish(FinishReason::Cancelled);
            }
            for id in intake.cancels {
                self.cancel(id);
            }
            if intake.stop {
                self.cancel_all();
                self.publish();
                return;
            }
            self.drop_deaf();
            if !self.running.is_empty() {
                self.step();
            }
            self.publish();
        }
    }

    /// Waits for work, takes cancellations, admits what fits.
    fn intake(&mut self) -> Intake {
        let inner = Arc::clone(&self.inner);
        let mut s = inner.lock();
        loop {
            let idle = self.running.is_empty()
                && self.preempted.is_empty()
                && s.queue.is_empty()
                && s.cancels.is_empty();
            if !idle || s.deadline.is_some() {
                break;
            }
            s = inner.wake.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        let mut dropped = Vec::new();
        let mut cancels = std::mem::take(&mut s.cancels);
        cancels.retain(|&id| match s.queue.iter().position(|p| p.id == id) {
            Some(i) => {
                dropped.extend(s.queue.remove(i));
                false
            }
            None => true,
        });
        let stop = match s.deadline {
            Some(d) => {
                Instant::now() >= d
                    || (self.running.is_empty() && self.preempted.is_empty() && s.queue.is_empty())
            }
            None => false,
        };
        if stop {
            dropped.extend(s.queue.drain(..));
            return Intake {
                dropped,
                cancels,
                stop,
            };
        }
        // Admission, first come first served: preempted sequences, then the queue.
        while !self.free_slots.is_empty() {
            let seq = match self.preempted.pop_front() {
                Some(seq) => seq,
                None => match s.queue.pop_front() {
                    Some(p) => {
                        let mut seq = Sequence::new(p.id, p.req, p.sink);
                        seq.prompt_keys = block_keys(&seq.req.prompt, self.kv.spec().block_size);
                        seq
                    }
                    None => break,
                },
            };
            if let Some(seq) = self.admit(seq) {
                // It waits at the head of the line (the deque stays in arrival order: it was
                // its front, or empty).
                self.preempted.push_front(seq);
                break;
            }
        }
        s.stats.queued = s.queue.len() + self.preempted.len();
        Intake {
            dropped,
            cancels,
            stop,
        }
    }

    /// Attaches the longest cached prefix of `seq`'s prompt and gives it a slot, when the pool
    /// can hold the rest of its tokens plus one; otherwise hands it back.
    fn admit(&mut self, mut seq: Sequence) -> Option<Sequence> {
        let bs = self.kv.spec().block_size;
        // At least the last token is computed: its logits are needed, and a shared block is
        // never written.
        let max_blocks = seq.prompt_keys.len().min((seq.tokens.len() - 1) / bs);
        let hit = self.prefix.lookup(&seq.req.prompt, bs, max_blocks);
        let pool = self.kv.pool();
        let hit_evictable = hit.iter().filter(|&&b| pool.ref_count(b) == 1).count();
        let room = pool.available() + self.prefix.evictable(&self.kv) - hit_evictable;
        let need = self.kv.spec().blocks_for(seq.tokens.len() + 1) - hit.len();
        if need > room {
            return Some(seq);
        }
        let slot = self.free_slots.pop().expect("admission needs a free slot");
        self.kv.attach(slot, &hit);
        seq.slot = slot;
        seq.n_computed = hit.len() * bs;
        seq.n_offered = hit.len();
        if !seq.started {
            seq.started = true;
            seq.cached_tokens = seq.n_computed;
            self.stats.prefix_cache_hits += seq.n_computed as u64;
            self.stats.tokens_in += seq.n_prompt() as u64;
        }
        let at = self.running.partition_point(|r| r.id < seq.id);
        self.running.insert(at, seq);
        None
    }

    /// Takes `seq` out of the batch, its blocks back to the pool (cached ones stay cached).
    fn leave(&mut self, mut seq: Sequence) -> Sequence {
        self.kv.release(seq.slot);
        self.free_slots.push(seq.slot);
        seq.slot = usize::MAX;
        seq.n_computed = 0;
        seq
    }

    fn cancel(&mut self, id: RequestId) {
        if let Some(i) = self.running.iter().position(|s| s.id == id) {
            let seq = self.running.remove(i);
            self.leave(seq).finish(FinishReason::Cancelled);
        } else if let Some(i) = self.preempted.iter().position(|s| s.id == id) {
            let mut seq = self.preempted.remove(i).expect("position found");
            seq.finish(FinishReason::Cancelled);
        }
    }

    fn cancel_all(&mut self) {
        for seq in std::mem::take(&mut self.running) {
            self.leave(seq).finish(FinishReason::Cancelled);
        }
        for mut seq in self.preempted.drain(..) {
            seq.finish(FinishReason::Cancelled);
        }
    }

    /// Removes sequences whose sink stopped listening.
    fn drop_deaf(&mut self) {
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].listening() {
                i += 1;
            } else {
                let seq = self.running.remove(i);
                self.leave(seq);
            }
        }
        self.preempted.retain(|s| s.listening());
    }

    /// Gives the youngest running sequence's blocks back; it resumes (recomputing its tokens)
    /// when there is room again.
    fn preempt_youngest(&mut self) -> RequestId {
        let seq = self.running.pop().expect("a running sequence");
        let seq = self.leave(seq);
        let id = seq.id;
        let at = self.preempted.partition_point(|p| p.id < id);
        self.preempted.insert(at, seq);
        self.stats.preemptions += 1;
        id
    }

    /// The tokens each running sequence feeds this step: one per decoding sequence, then
    /// prompt chunks in arrival order within the step budget. Blocks are reserved for them,
    /// evicting cached prefixes and then preempting the youngest sequences when the pool is
    /// short (the oldest sequence always proceeds, so the loop never deadlocks).
    fn plan(&mut self) -> Vec<(RequestId, usize)> {
        let mut budget = self.config.max_step_tokens;
        let mut plan = Vec::new();
        for decoding in [true, false] {
            for s in &self.running {
                let r = s.remaining();
                if budget == 0 || r == 0 || (r == 1) != decoding {
                    continue;
                }
                let n = r.min(budget);
                plan.push((s.id, n));
                budget -= n;
            }
        }
        plan.sort_by_key(|p| p.0);
        let mut i = 0;
        while i < plan.len() {
            let (id, n) = plan[i];
            let mut keep = true;
            loop {
                let s = self.running.iter().find(|s| s.id == id).expect("planned");
                if self.kv.reserve(s.slot, s.n_computed + n).is_ok() {
                    break;
                }
                if self.prefix.evict_one(&mut self.kv) {
                    continue;
                }
                if self.running.last().map(|s| s.id) == Some(id) {
                    // The youngest waits for older ones to finish.
                    keep = false;
                    break;
                }
                let victim = self.preempt_youngest();
                plan.retain(|p| p.0 != victim);
            }
            if keep {
                i += 1;
            } else {
                plan.remove(i);
            }
        }
        plan
    }

    /// One forward pass over the planned tokens, then sampling for every sequence whose
    /// tokens are all computed.
    fn step(&mut self) {
        let plan = self.plan();
        if plan.is_empty() {
            return;
        }
        // The blocks just reserved show in the stats while this step's events go out.
        self.publish();
        let (mut tokens, mut positions, mut seq_ids) = (Vec::new(), Vec::new(), Vec::new());
        let mut logits_for = Vec::new();
        // (index into running, index into the logits rows or None)
        let mut fed = Vec::with_capacity(plan.len());
        for &(id, n) in &plan {
            let i = self
                .running
                .iter()
                .position(|s| s.id == id)
                .expect("planned");
            let s = &self.running[i];
            for p in s.n_computed..s.n_computed + n {
                tokens.push(s.tokens[p]);
                positions.push(p);
                seq_ids.push(s.slot);
            }
            let row = (s.n_computed + n == s.tokens.len()).then(|| {
                logits_for.push(tokens.len() - 1);
                logits_for.len() - 1
            });
            fed.push((i, n, row));
        }
        let batch = Batch {
            tokens: &tokens,
            positions: &positions,
            seq_ids: &seq_ids,
            logits_for: &logits_for,
        };
        let logits = match self
            .model
            .forward_path(&batch, &mut self.kv, Some(SERVE_MATMUL_PATH))
        {
            Ok(l) => l,
            Err(e) => {
                let msg = format!("forward pass failed: {e}");
                let mut failed: Vec<usize> = fed.iter().map(|f| f.0).collect();
                failed.sort_unstable();
                for i in failed.into_iter().rev() {
                    let seq = self.running.remove(i);
                    self.leave(seq).fail(msg.clone());
                }
                return;
            }
        };
        self.stats.steps += 1;
        let vocab = self.model.config.vocab_size;
        let mut done = Vec::new();
        for (i, n, row) in fed {
            self.running[i].n_computed += n;
            self.offer_prompt_blocks(i);
            if let Some(r) = row {
                let s = &mut self.running[i];
                let before = s.generated().len();
                let finish = s.sample(&logits[r * vocab..(r + 1) * vocab]);
                self.stats.tokens_out += (s.generated().len() - before) as u64;
                if let Some(f) = finish {
                    done.push((i, f));
                }
            }
        }
        done.sort_unstable_by_key(|d| d.0);
        let mut finished = Vec::with_capacity(done.len());
        for (i, f) in done.into_iter().rev() {
            let seq = self.running.remove(i);
            finished.push((self.leave(seq), f));
        }
        // The figures show the finished sequences gone before their clients hear the end.
        if !finished.is_empty() {
            self.publish();
        }
        for (mut seq, f) in finished.into_iter().rev() {
            seq.finish(f);
        }
        self.drop_deaf();
    }

    /// Hands the newly completed full prompt blocks of `running[i]` to the prefix cache.
    fn offer_prompt_blocks(&mut self, i: usize) {
        let bs = self.kv.spec().block_size;
        let s = &mut self.running[i];
        let full = s.n_computed.min(s.n_prompt()) / bs;
        while s.n_offered < full {
            let b = s.n_offered;
            let parent = b.checked_sub(1).map(|p| s.prompt_keys[p]);
            let block = self.kv.blocks(s.slot)[b];
            self.prefix.insert(
                &mut self.kv,
                s.prompt_keys[b],
                parent,
                &s.req.prompt[b * bs..(b + 1) * bs],
                b,
                block,
            );
            s.n_offered += 1;
        }
    }

    /// Copies the counters to where [`super::Scheduler::stats`] reads them.
    fn publish(&self) {
        let cached = self.prefix.evictable(&self.kv);
        let used = self.kv.pool().used() - cached;
        let mut s = self.inner.lock();
        s.stats = SchedulerStats {
            queued: s.queue.len() + self.preempted.len(),
            running: self.running.len(),
            kv_blocks_used: used,
            kv_blocks_free: self.config.kv_blocks - used,
            kv_blocks_cached: cached,
            ..self.stats
        };
    }
}
