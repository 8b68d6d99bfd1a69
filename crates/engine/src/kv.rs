use model::KvView;

/// KV storage for a set of sequences, contiguous per (sequence, layer), growing as positions
/// are written. (The paged block pool of the server will implement the same [`KvView`].)
#[derive(Debug, Default)]
pub struct KvCache {
    n_layers: usize,
    kv_dim: usize,
    /// Indexed by sequence id: per layer, keys then values, `kv_dim` floats per position.
    seqs: Vec<SeqKv>,
}

#[derive(Debug, Default, Clone)]
struct SeqKv {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
}

impl KvCache {
    pub fn new(n_layers: usize, kv_dim: usize) -> Self {
        KvCache {
            n_layers,
            kv_dim,
            seqs: Vec::new(),
        }
    }

    /// Number of positions stored for `seq` (in layer 0).
    pub fn len(&self, seq: usize) -> usize {
        self.seqs
            .get(seq)
            .and_then(|s| s.keys.first())
            .map_or(0, |k| k.len() / self.kv_dim)
    }

    /// Keeps only the first `n_pos` positions of `seq`.
    pub fn truncate(&mut self, seq: usize, n_pos: usize) {
        if let Some(s) = self.seqs.get_mut(seq) {
            for buf in s.keys.iter_mut().chain(s.values.iter_mut()) {
                buf.truncate(n_pos * self.kv_dim);
            }
        }
    }

    fn slot(&mut self, seq: usize) -> &mut SeqKv {
        if self.seqs.len() <= seq {
            self.seqs.resize(seq + 1, SeqKv::default());
        }
        let s = &mut self.seqs[seq];
        if s.keys.is_empty() {
            s.keys = vec![Vec::new(); self.n_layers];
            s.values = vec![Vec::new(); self.n_layers];
        }
        s
    }
}

impl KvView for KvCache {
    fn store(&mut self, layer: usize, seq: usize, pos: usize, key: &[f32], value: &[f32]) {
        let d = self.kv_dim;
        let s = self.slot(seq);
        for (buf, src) in [(&mut s.keys[layer], key), (&mut s.values[layer], value)] {
            if buf.len() < (pos + 1) * d {
                buf.resize((pos + 1) * d, 0.0);
            }
            buf[pos * d..(pos + 1) * d].copy_from_slice(src);
        }
    }

    fn key(&self, layer: usize, seq: usize, pos: usize) -> &[f32] {
        &self.seqs[seq].keys[layer][pos * self.kv_dim..(pos + 1) * self.kv_dim]
    }

    fn value(&self, layer: usize, seq: usize, pos: usize) -> &[f32] {
        &self.seqs[seq].values[layer][pos * self.kv_dim..(pos + 1) * self.kv_dim]
    }
}
