use rayon::prelude::*;

use kernels::{
    add_assign, dot, matmul, rms_norm, rope_cos_sin, rope_interleaved, silu_mul, softmax, RopeFreqs,
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
    rope: RopeFreqs,
}

impl Llama {
    pub fn new(
        config: LlamaConfig,
        tok_embeddings: Weight,
        layers: Vec<LayerWeights>,
        output_norm: Vec<f32>,
        output: Weight,
    ) -> Self {
        let rope = config.rope_freqs();
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
        self.check_batch(batch)?;
        let c = &self.config;
        let n = batch.tokens.len();
        let (dim, q_dim, kv_dim, head_dim) = (c.dim, c.q_dim(), c.kv_dim(), c.head_dim);

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
        let rope: Vec<Vec<(f32, f32)>> = batch
            .positions
            .iter()
            .map(|&pos| rope_cos_sin(pos, &self.rope))
            .collect();

        for (l, layer) in self.layers.iter().enumerate() {
            // Attention block.
            for (o, xi) in xn.chunks_exact_mut(dim).zip(x.chunks_exact(dim)) {
                rms_norm(xi, &layer.attn_norm, c.norm_eps, o);
            }
            matmul(&layer.wq.view(), &xn, n, &mut q);
            matmul(&layer.wk.view(), &xn, n, &mut k);
            matmul(&layer.wv.view(), &xn, n, &mut v);
            for t in 0..n {
                let pos = batch.positions[t];
                rope_interleaved(&mut q[t * q_dim..(t + 1) * q_dim], head_dim, &rope[t]);
                rope_interleaved(&mut k[t * kv_dim..(t + 1) * kv_dim], head_dim, &rope[t]);
                let (kt, vt) = (
                    &k[t * kv_dim..(t + 1) * kv_dim],
                    &v[t * kv_dim..(t + 1) * kv_dim],
                );
                kv.store(l, batch.seq_ids[t], pos, kt, vt);
            }
            self.attention(l, batch, &q, &*kv, &mut attn);
            matmul(&layer.wo.view(), &attn, n, &mut proj);
            add_assign(&mut x, &proj);

            // MLP block (SwiGLU).
            for (o, xi) in xn.chunks_exact_mut(dim).zip(x.chunks_exact(dim)) {
                rms_norm(xi, &layer.ffn_norm, c.norm_eps, o);
            }
            matmul(&layer.w_gate.view(), &xn, n, &mut gate);
            matmul(&layer.w_up.view(), &xn, n, &mut up);
            silu_mul(&mut gate, &up);
            matmul(&layer.w_down.view(), &gate, n, &mut proj);
            add_assign(&mut x, &proj);
        }

        // Final norm and output projection, only for the rows asked for.
        let m = batch.logits_for.len();
        let mut xf = vec![0f32; m * dim];
        for (o, &i) in xf.chunks_exact_mut(dim).zip(batch.logits_for) {
            rms_norm(&x[i * dim..(i + 1) * dim], &self.output_norm, c.norm_eps, o);
        }
        let mut logits = vec![0f32; m * c.vocab_size];
        matmul(&self.output.view(), &xf, m, &mut logits);
        Ok(logits)
    }

    /// Causal attention of every (token, head) of the batch over its sequence's stored keys
    /// and values, positions `0..=pos`. Query heads share KV heads in groups (GQA).
    fn attention(&self, layer: usize, batch: &Batch, q: &[f32], kv: &dyn KvView, out: &mut [f32]) {
        let c = &self.config;
        let head_dim = c.head_dim;
        let group = c.n_heads / c.n_kv_heads;
        let scale = 1.0 / (head_dim as f32).sqrt();
        // One score buffer per worker, reused across (token, head) pairs.
        out.par_chunks_mut(head_dim)
            .enumerate()
            .for_each_init(Vec::new, |scores, (idx, o)| {
                let (t, h) = (idx / c.n_heads, idx % c.n_heads);
                let (seq, pos) = (batch.seq_ids[t], batch.positions[t]);
                let qh = &q[idx * head_dim..(idx + 1) * head_dim];
                let kv_off = (h / group) * head_dim;
                scores.clear();
                scores.extend(
                    (0..=pos).map(|p| {
                        dot(qh, &kv.key(layer, seq, p)[kv_off..kv_off + head_dim]) * scale
                    }),
                );
                softmax(scores);
                o.fill(0.0);
                for (p, &w) in scores.iter().enumerate() {
                    let vp = &kv.value(layer, seq, p)[kv_off..kv_off + head_dim];
                    for (a, b) in o.iter_mut().zip(vp) {
                        *a += w * b;
                    }
                }
            });
    }
}
