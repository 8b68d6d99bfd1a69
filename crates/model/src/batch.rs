/// A flat batch of tokens to run through the model. Entry `i` is token `tokens[i]` at position
/// `positions[i]` of sequence `seq_ids[i]`. Within one sequence, positions must be increasing and
/// every earlier position must already be in the KV storage or earlier in this batch.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub tokens: &'a [u32],
    pub positions: &'a [usize],
    pub seq_ids: &'a [usize],
    /// Indices into the batch whose logits are returned, in this order.
    pub logits_for: &'a [usize],
}

/// The model's window onto KV storage owned by the caller: one key and one value vector of
/// `n_kv_heads * head_dim` floats per (layer, sequence, position).
pub trait KvView: Sync {
    /// Stores the key and value of `seq` at `pos` in `layer`.
    fn store(&mut self, layer: usize, seq: usize, pos: usize, key: &[f32], value: &[f32]);
    /// The key of `seq` at `pos` in `layer`, stored earlier.
    fn key(&self, layer: usize, seq: usize, pos: usize) -> &[f32];
    /// The value of `seq` at `pos` in `layer`, stored earlier.
    fn value(&self, layer: usize, seq: usize, pos: usize) -> &[f32];
}
