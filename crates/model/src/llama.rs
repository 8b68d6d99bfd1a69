use std::borrow::Cow;
use std::cell::RefCell;

use kernels::{
    add_assign, attend_block_rows, for_each_item, matmul_many, matmul_path, read_ahead, rms_norm,
    rope_interleaved, silu_mul, MatmulPath, RopeTable, SoftmaxState, ATTN_BLOCK,
};

use crate::{Batch, KvView, LayerWeights, LlamaConfig, ModelError, Result, Weight};

/// A loaded Llama-family model: configuration and weights, nothing per request.
#[derive(Debug, Clone)]
pub struct Llama {
    pub config: LlamaConfig,
    pub tok_embeddings: Weight, // [vocab_size, dim]
    pub layers: Vec<LayerWeights>,
    pub output_norm: Vec<f32>, // [dim]
    pub output: Weight,        // [vocab_size, dim]
    /// The rotation of every position of the context (up to `kernels::ROPE_TABLE_POSITIONS`).
    rope: RopeTable,
}

impl Llama {
    /// Makes now the repacked copies decode would make on first use ([`Weight::repack`]):
    /// every layer's matrices and the output, where this CPU's kernels have a faster layout
    /// for their type (Q4_0 at AVX-512); the token embeddings stay as stored (rows are looked
    /// up, not multiplied). Returns the bytes held in repacked copies.
    pub fn repack_for_kernels(&self) -> u64 {
        self.products().map(Weight::repack).sum()
    }

    /// Stored bytes of the matrices that serve from their stored layout although this CPU's
    /// kernels have a faster one ([`Weight::lacks_faster_layout`]): after
    /// [`Llama::repack_for_kernels`], those whose copy could not be had.
    pub fn bytes_lacking_faster_layout(&self) -> u64 {
        self.products()
            .filter(|w| w.lacks_faster_layout())
            .map(|w| w.view().bytes.len() as u64)
            .sum()
    }

    /// Keeps every matrix in its stored layout for good ([`Weight::keep_stored`]).
    pub fn keep_stored_layouts(&self) {
        self.products().for_each(Weight::keep_stored);
    }

    /// The matrices the forward pass multiplies by: every layer's and the output.
    fn products(&self) -> impl Iterator<Item = &Weight> {
        let layers = self
            .layers
            .iter()
            .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_down, &l.w_up]);
        std::iter::once(&self.output).chain(layers)
    }

    pub fn new(
        config: LlamaConfig,
        tok_embeddings: Weight,
        layers: Vec<LayerWeights>,
        output_norm: Vec<f32>,
        output: Weight,
    ) -> Self {
        let rope = RopeTable::new(config.rope_freqs(), config.max_seq_len);
        Llama {
            config,
            tok_embeddings,
            layers,
            output_norm,
            output,
            rope,
        }
    }

    fn check_batch(&self, b: &Batch) -> Result<()> {
        let n = b.tokens.len();
        if b.positions.len() != n || b.seq_ids.len() != n {
            return Err(ModelError::BadBatch(format!(
                "{n} tokens, {} positions, {} sequence ids",
                b.positions.len(),
                b.seq_ids.len()
            )));
        }
        if let Some(&i) = b.logits_for.iter().find(|&&i| i >= n) {
            return Err(ModelError::BadBatch(format!(
                "logits asked for entry {i} of {n}"
            )));
        }
        let vocab_size = self.config.vocab_size;
        if let Some(&id) = b.tokens.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(ModelError::TokenOutOfRange { id, vocab_size });
        }
        let max_seq_len = self.config.max_seq_len;
        if let Some(&pos) = b.positions.iter().find(|&&p| p >= max_seq_len) {
            return Err(ModelError::PositionOutOfRange { pos, max_seq_len });
        }
        Ok(())
    }

    /// Runs `batch` through the model, storing each token's keys and values in `kv`, and returns
    /// the logits (`[batch.logits_for.len(), vocab_size]`, row-major) of the entries asked for.
    pub fn forward(&self, batch: &Batch, kv: &mut dyn KvView) -> Result<Vec<f32>> {
        self.forward_path(batch, kv, None)
    }

    /// [`Llama::forward`] with every matrix product taken by `path` (`None`: by the number of
    /// entries). A fixed path makes each entry's logits bitwise independent of the rest of the
    /// batch (see `kernels::MatmulPath`); the attention is so already.
    pub fn forward_path(
        &self,
        batch: &Batch,
        kv: &mut dyn KvView,
        path: Option<MatmulPath>,
    ) -> Result<Vec<f32>> {
        self.check_batch(batch)?;
        let c = &self.config;
        let n = batch.tokens.len();
        let (dim, q_dim, kv_dim, head_dim) = (c.dim, c.q_dim(), c.kv_dim(), c.head_dim);

        // The path for the layers' weights' type (the first layer's gate projection stands
        // for them).
        let mm_path = path.unwrap_or_else(|| match self.layers.first() {
            Some(l) => MatmulPath::auto_for(n, l.w_gate.ty, l.w_gate.n_cols),
            None => MatmulPath::auto(n),
        });
        // Row kernels (decode) take repacked weights, made on first use; tile kernels take
        // whichever form exists (the same bits either way), so a prompt never waits for a copy.
        let rows = mm_path == MatmulPath::Rows;
        fn wv(rows: bool, w: &Weight) -> kernels::WeightView<'_> {
            if rows {
                w.fast_view()
            } else {
                w.current_view()
            }
        }
        // x: [n, dim], the residual stream.
        let mut x = vec![0f32; n * dim];
        for (row, &tok) in x.chunks_exact_mut(dim).zip(batch.tokens) {
            self.tok_embeddings.view().row_f32(tok as usize, row);
        }
        let mut xn = vec![0f32; n * dim];
        let mut q = vec![0f32; n * q_dim];
        let mut k = vec![0f32; n * kv_dim];
        let mut v = vec![0f32; n * kv_dim];
        let mut attn = vec![0f32; n * q_dim];
        let mut proj = vec![0f32; n * dim];
        let mut gate = vec![0f32; n * c.hidden_dim];
        let mut up = vec![0f32; n * c.hidden_dim];
        // The rotation of each entry's position, shared by all layers.
        let rope: Vec<Cow<[f32]>> = batch
            .positions
            .iter()
            .map(|&pos| self.rope.at(pos))
            .collect();

        // The same split of the attention work serves every layer.
        let tasks = attention_tasks(batch, c.n_kv_heads, c.n_heads / c.n_kv_heads);
        // Decode streams the weights: before each product the next one is declared, so that
        // threads with nothing to do in between bring the start of its weights into their
        // caches (`kernels::read_ahead`; a hint, no result changes).
        let ahead = |ws: &[&Weight]| {
            if rows {
                let views: Vec<_> = ws.iter().map(|w| wv(rows, w)).collect();
                read_ahead(&views);
            }
        };
        if let Some(first) = self.layers.first() {
            ahead(&[&first.wq, &first.wk, &first.wv]);
            norm_rows(&x, &first.attn_norm, c.norm_eps, &mut xn);
        }
        for (l, layer) in self.layers.iter().enumerate() {
            // Attention block (`xn` holds the normed input).
            ahead(&[&layer.wo]);
            matmul_many(
                mm_path,
                &[
                    wv(rows, &layer.wq),
                    wv(rows, &layer.wk),
                    wv(rows, &layer.wv),
                ],
                &xn,
                n,
                &mut [&mut q, &mut k, &mut v],
            );
            rope_rows(&mut q, &mut k, (q_dim, kv_dim), head_dim, &rope);
            for t in 0..n {
                let (kt, vt) = (
                    &k[t * kv_dim..(t + 1) * kv_dim],
                    &v[t * kv_dim..(t + 1) * kv_dim],
                );
                kv.store(l, batch.seq_ids[t], batch.positions[t], kt, vt);
            }
            self.attention(l, batch, &tasks, &q, &*kv, &mut attn);
            ahead(&[&layer.w_gate, &layer.w_up]);
            matmul_path(mm_path, &wv(rows, &layer.wo), &attn, n, &mut proj);

            // MLP block (SwiGLU).
            add_norm_rows(&mut x, &proj, &layer.ffn_norm, c.norm_eps, &mut xn);
            ahead(&[&layer.w_down]);
            matmul_many(
                mm_path,
                &[wv(rows, &layer.w_gate), wv(rows, &layer.w_up)],
                &xn,
                n,
                &mut [&mut gate, &mut up],
            );
            silu_mul(&mut gate, &up);
            match self.layers.get(l + 1) {
                Some(next) => ahead(&[&next.wq, &next.wk, &next.wv]),
                None => ahead(&[&self.output]),
            }
            matmul_path(mm_path, &wv(rows, &layer.w_down), &gate, n, &mut proj);
            match self.layers.get(l + 1) {
                Some(next) => add_norm_rows(&mut x, &proj, &next.attn_norm, c.norm_eps, &mut xn),
                None => add_assign(&mut x, &proj),
            }
        }
        ahead(&[]);

        // Final norm and output projection, only for the rows asked for.
        let m = batch.logits_for.len();
        let mut xf = vec![0f32; m * dim];
        for (o, &i) in xf.chunks_exact_mut(dim).zip(batch.logits_for) {
            rms_norm(&x[i * dim..(i + 1) * dim], &self.output_norm, c.norm_eps, o);
        }
        let mut logits = vec![0f32; m * c.vocab_size];
        let out_path = path.unwrap_or(MatmulPath::auto_for(m, self.output.ty, self.output.n_cols));
        let output = wv(rows && out_path == MatmulPath::Rows, &self.output);
        matmul_path(out_path, &output, &xf, m, &mut logits);
        Ok(logits)
    }

    /// Causal attention of every (token, head) of the batch over its sequence's stored keys
    /// and values, positions `0..=pos`, with an online softmax over blocks of positions.
    ///
    /// Work is split into tasks of (a few entries of one sequence, one KV head): each task
    /// decodes a block of cached keys and values once and uses it for every query head of the
    /// group (GQA) and every entry of the task. The arithmetic of one (token, head) depends only
    /// on its query and the cached rows, never on the rest of the batch, so a sequence gets the
    /// same result alone or batched with others.
    fn attention(
        &self,
        layer: usize,
        batch: &Batch,
        tasks: &[AttnTask],
        q: &[f32],
        kv: &dyn KvView,
        out: &mut [f32],
    ) {
        let c = &self.config;
        let group = c.n_heads / c.n_kv_heads;
        // Each entry's outputs of one KV head's query heads are side by side in `out`
        // (`group × head_dim` values at `(entry · n_kv_heads + kv_head)`): handed to the task
        // that computes them, which writes them in place.
        let mut parts: Vec<Option<&mut [f32]>> =
            out.chunks_exact_mut(group * c.head_dim).map(Some).collect();
        let items: Vec<(&AttnTask, Vec<&mut [f32]>)> = tasks
            .iter()
            .map(|t| {
                let outs = t.entries.iter().map(|&e| {
                    parts[e * c.n_kv_heads + t.kv_head]
                        .take()
                        .expect("each entry's KV head in one task")
                });
                (t, outs.collect())
            })
            .collect();
        for_each_item(items, |(task, mut outs)| {
            ATTN_SCRATCH.with(|s| match s.try_borrow_mut() {
                Ok(mut s) => self.attend(layer, batch, q, kv, task, &mut s, &mut outs),
                Err(_) => {
                    let mut s = AttnScratch::default();
                    self.attend(layer, batch, q, kv, task, &mut s, &mut outs)
                }
            })
        });
    }

    /// One attention task: entry `i`'s `group` rows of `head_dim` outputs into `outs[i]`.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        layer: usize,
        batch: &Batch,
        q: &[f32],
        kv: &dyn KvView,
        task: &AttnTask,
        s: &mut AttnScratch,
        outs: &mut [&mut [f32]],
    ) {
        let c = &self.config;
        let (head_dim, q_dim, kv_dim) = (c.head_dim, c.q_dim(), c.kv_dim());
        let group = c.n_heads / c.n_kv_heads;
        let scale = 1.0 / (head_dim as f32).sqrt();
        let (ty, bs) = (kv.kv_type(), kv.block_size());
        let (row_bytes, head_bytes) = (ty.row_bytes(kv_dim), ty.row_bytes(head_dim));
        let head_off = task.kv_head * head_bytes;
        let seq = batch.seq_ids[task.entries[0]];
        let max_pos = task
            .entries
            .iter()
            .map(|&e| batch.positions[e])
            .max()
            .unwrap_or(0);
        let n_rows = task.entries.len() * group;
        s.acc.clear();
        s.acc.resize(n_rows * head_dim, 0.0);
        s.state.clear();
        s.state.resize(n_rows, SoftmaxState::default());
        // Keys go to the kernel `step` at a time (whatever the KV block size), the steps at the
        // same positions for every call, so a row's arithmetic does not depend on the batch.
        let step = ATTN_BLOCK;
        s.keys_t.resize(head_dim * step, 0.0);
        s.values.resize(step * head_dim, 0.0);
        s.row.resize(head_dim, 0.0);
        s.scores.resize(step, 0.0);
        s.ns.resize(n_rows, 0);
        // The task's query rows side by side: entry after entry, the group's heads in order.
        s.q.clear();
        let heads = task.kv_head * group * head_dim..(task.kv_head + 1) * group * head_dim;
        for &e in &task.entries {
            s.q.extend_from_slice(&q[e * q_dim..(e + 1) * q_dim][heads.clone()]);
        }
        for first in (0..=max_pos).step_by(step) {
            // The next step's keys and values of this head asked for now: a head's slice of
            // a cached row is 2 of its 8 lines (TinyLlama), in blocks of a pool, a pattern
            // the hardware's prefetchers do not follow; unasked, a decode step at depth 2048
            // spent most of its attention waiting for them.
            let (mut p, end) = (first + step, (first + 2 * step).min(max_pos + 1));
            while p < end {
                let (b, r0) = (p / bs, p % bs);
                let n = (bs - r0).min(end - p);
                let blk = kv.block(layer, seq, b);
                for r in r0..r0 + n {
                    let at = head_off + r * row_bytes;
                    kernels::prefetch_range(&blk.keys[at..at + head_bytes]);
                    kernels::prefetch_range(&blk.values[at..at + head_bytes]);
                }
                p += n;
            }
            let n_valid = step.min(max_pos + 1 - first);
            // Positions first..first + n_valid, from the KV blocks that hold them.
            let mut p = first;
            while p < first + n_valid {
                let (b, r0) = (p / bs, p % bs);
                let n = (bs - r0).min(first + n_valid - p);
                let blk = kv.block(layer, seq, b);
                let (at, col) = (head_off + r0 * row_bytes, p - first);
                ty.decode_transposed(
                    &blk.keys[at..],
                    row_bytes,
                    n,
                    &mut s.keys_t[col..],
                    step,
                    &mut s.row,
                );
                ty.decode_rows(
                    &blk.values[at..],
                    row_bytes,
                    n,
                    &mut s.values[col * head_dim..(col + n) * head_dim],
                );
                p += n;
            }
            for (i, &e) in task.entries.iter().enumerate() {
                let pos = batch.positions[e];
                let n = if pos < first {
                    0
                } else {
                    n_valid.min(pos + 1 - first)
                };
                s.ns[i * group..(i + 1) * group].fill(n);
            }
            attend_block_rows(
                &s.q,
                &s.ns,
                &s.keys_t,
                &s.values,
                step,
                scale,
                &mut s.scores,
                &mut s.state,
                &mut s.acc,
            );
        }
        let out_rows = outs.iter_mut().flat_map(|o| o.chunks_exact_mut(head_dim));
        for ((o, acc), st) in out_rows.zip(s.acc.chunks_exact(head_dim)).zip(&s.state) {
            let inv = 1.0 / st.sum;
            o.iter_mut().zip(acc).for_each(|(o, a)| *o = a * inv);
        }
    }
}

/// RMSNorm of each row of `x` into `out` (rows of `weight.len()` values); a prompt's rows are
/// spread over threads (each row on its own, so the result is the same).
fn norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let dim = weight.len();
    let rows = out.chunks_exact_mut(dim).zip(x.chunks_exact(dim));
    each_row(rows, |(o, xi)| rms_norm(xi, weight, eps, o));
}

/// `x += y`, then RMSNorm of each row of `x` into `out` (rows of `weight.len()` values), a row
/// at a time: the residual sum and the next block's norm in one pass over the rows, the same
/// arithmetic as [`add_assign`] then [`norm_rows`].
fn add_norm_rows(x: &mut [f32], y: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let dim = weight.len();
    let rows = out
        .chunks_exact_mut(dim)
        .zip(x.chunks_exact_mut(dim).zip(y.chunks_exact(dim)));
    each_row(rows, |(o, (xi, yi))| {
        add_assign(xi, yi);
        rms_norm(xi, weight, eps, o);
    });
}

/// `f` on every row, the rows spread over threads when there are enough of them (a prompt's).
fn each_row<T: Send>(rows: impl ExactSizeIterator<Item = T>, f: impl Fn(T) + Sync) {
    if rows.len() < 16 {
        rows.for_each(f);
    } else {
        for_each_item(rows.collect(), f);
    }
}

/// RoPE on each row of the queries `q` and keys `k` (rows of `dims.0` and `dims.1` values,
/// row `t` of each rotated by `rope[t]`); a prompt's rows are spread over threads, as in
/// [`norm_rows`].
fn rope_rows(
    q: &mut [f32],
    k: &mut [f32],
    dims: (usize, usize),
    head_dim: usize,
    rope: &[Cow<[f32]>],
) {
    let rows = q
        .chunks_exact_mut(dims.0)
        .zip(k.chunks_exact_mut(dims.1))
        .zip(rope);
    each_row(rows, |((qr, kr), cs)| {
        rope_interleaved(qr, head_dim, cs);
        rope_interleaved(kr, head_dim, cs);
    });
}

/// Entries of one sequence per attention task: as many as make [`ATTN_TASK_ROWS`] query rows
/// (entries times the query heads that share the task's KV head), and at least
/// [`ATTN_TASK_ENTRIES`]. Small enough to spread a long prompt over threads, large enough that
/// the keys and values of a step, decoded from the cache once per task, serve many queries.
/// At 16 entries, models without GQA (stories15M: one row per entry) spent about a quarter of
/// their prompt's attention decoding and prefetching the cache; 64 rows read stories15M Q8_0
/// pp512 1.13-1.31x as fast as 16 at one thread, 1.08-1.35x at two (three alternating rounds,
/// BENCHMARKS.md). TinyLlama's 8 heads per KV head keep their 16 entries (128 rows).
const ATTN_TASK_ROWS: usize = 64;
/// Entries per attention task at least ([`ATTN_TASK_ROWS`]).
const ATTN_TASK_ENTRIES: usize = 16;

/// Entries per attention task for `group` query heads per KV head ([`ATTN_TASK_ROWS`]).
fn task_entries(group: usize) -> usize {
    ATTN_TASK_ENTRIES.max(ATTN_TASK_ROWS / group.max(1))
}

/// A piece of attention work: some entries of one sequence (batch indices), one KV head.
struct AttnTask {
    entries: Vec<usize>,
    kv_head: usize,
}

thread_local! {
    /// Each thread's [`AttnScratch`], kept between calls.
    static ATTN_SCRATCH: RefCell<AttnScratch> = RefCell::new(AttnScratch::default());
}

/// Per-thread buffers of [`Llama::attend`].
#[derive(Default)]
struct AttnScratch {
    /// The block's keys of one head, transposed: `[head_dim][block]`.
    keys_t: Vec<f32>,
    /// The block's values of one head: `[block][head_dim]`.
    values: Vec<f32>,
    row: Vec<f32>,
    scores: Vec<f32>,
    /// The task's query rows, `[entries × group][head_dim]`.
    q: Vec<f32>,
    /// Keys of the current block each row sees.
    ns: Vec<usize>,
    acc: Vec<f32>,
    state: Vec<SoftmaxState>,
}

/// Splits the batch into attention tasks: entries grouped by sequence (in batch order), at most
/// [`task_entries`] per task, times every KV head.
fn attention_tasks(batch: &Batch, n_kv_heads: usize, group: usize) -> Vec<AttnTask> {
    let mut by_seq: Vec<(usize, Vec<usize>)> = Vec::new();
    for (e, &seq) in batch.seq_ids.iter().enumerate() {
        match by_seq.iter_mut().find(|(s, _)| *s == seq) {
            Some((_, entries)) => entries.push(e),
            None => by_seq.push((seq, vec![e])),
        }
    }
    let mut tasks = Vec::new();
    for (_, entries) in &by_seq {
        for chunk in entries.chunks(task_entries(group)) {
            for kv_head in 0..n_kv_heads {
                tasks.push(AttnTask {
                    entries: chunk.to_vec(),
                    kv_head,
                });
            }
        }
    }
    tasks
}
