//! KV storage in fixed-size blocks from one pool (paged): a sequence is a table of block ids,
//! blocks are reference-counted so that sequences can share a common prefix, and a block goes
//! back to the pool when its last holder lets go.

use model::{KvBlock, KvType, KvView};

use crate::{EngineError, Result};

/// Positions per block unless a caller chooses otherwise.
pub const DEFAULT_BLOCK_SIZE: usize = 16;

/// The shape of KV storage for one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvSpec {
    pub n_layers: usize,
    /// Values per position per layer: `n_kv_heads * head_dim`.
    pub kv_dim: usize,
    pub head_dim: usize,
    pub kv_type: KvType,
    /// Positions per block.
    pub block_size: usize,
}

impl KvSpec {
    /// The storage shape of `config` in `kv_type`, blocks of [`DEFAULT_BLOCK_SIZE`].
    pub fn new(config: &model::LlamaConfig, kv_type: KvType) -> Result<Self> {
        if !kv_type.fits_head_dim(config.head_dim) {
            return Err(EngineError::Invalid(format!(
                "a {kv_type} KV cache needs a head size that is a multiple of 32; this model's \
                 is {} (use --kv-type f16 or f32)",
                config.head_dim
            )));
        }
        Ok(KvSpec {
            n_layers: config.n_layers,
            kv_dim: config.kv_dim(),
            head_dim: config.head_dim,
            kv_type,
            block_size: DEFAULT_BLOCK_SIZE,
        })
    }

    /// Bytes of one stored row (one position, one layer, keys or values).
    pub fn row_bytes(&self) -> usize {
        self.kv_type.row_bytes(self.kv_dim)
    }

    /// Bytes of one position: keys and values of every layer (what attention reads of each
    /// position of a sequence's context per token).
    pub fn position_bytes(&self) -> usize {
        2 * self.n_layers * self.row_bytes()
    }

    /// Bytes of one block: keys and values of every layer.
    pub fn block_bytes(&self) -> usize {
        self.block_size * self.position_bytes()
    }

    /// Blocks needed to hold `n_pos` positions.
    pub fn blocks_for(&self, n_pos: usize) -> usize {
        n_pos.div_ceil(self.block_size)
    }
}

/// Index of a block in its pool.
pub type BlockId = u32;

/// A pool of KV blocks. Blocks are allocated lazily up to `capacity` and recycled through a
/// free list; each has a reference count.
#[derive(Debug)]
pub struct KvPool {
    spec: KvSpec,
    capacity: usize,
    blocks: Vec<Box<[u8]>>,
    refs: Vec<u32>,
    free: Vec<BlockId>,
}

impl KvPool {
    /// A pool of at most `capacity` blocks (memory is taken as blocks are first used).
    pub fn new(spec: KvSpec, capacity: usize) -> Self {
        KvPool {
            spec,
            capacity,
            blocks: Vec::new(),
            refs: Vec::new(),
            free: Vec::new(),
        }
    }

    pub fn spec(&self) -> &KvSpec {
        &self.spec
    }

    /// The most blocks this pool hands out.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Blocks held by at least one sequence.
    pub fn used(&self) -> usize {
        self.blocks.len() - self.free.len()
    }

    /// Blocks that can still be handed out.
    pub fn available(&self) -> usize {
        self.capacity - self.used()
    }

    /// Bytes of block memory taken from the system so far.
    pub fn allocated_bytes(&self) -> usize {
        self.blocks.len() * self.spec.block_bytes()
    }

    /// A fresh block with one reference, or `None` when the pool is exhausted.
    pub fn alloc(&mut self) -> Option<BlockId> {
        if let Some(id) = self.free.pop() {
            self.refs[id as usize] = 1;
            return Some(id);
        }
        if self.blocks.len() >= self.capacity {
            return None;
        }
        self.blocks
            .push(vec![0u8; self.spec.block_bytes()].into_boxed_slice());
        self.refs.push(1);
        Some((self.blocks.len() - 1) as BlockId)
    }

    /// One more holder of `id`.
    pub fn retain(&mut self, id: BlockId) {
        debug_assert!(self.refs[id as usize] > 0, "retain of a free block");
        self.refs[id as usize] += 1;
    }

    /// One holder fewer; the block returns to the pool at zero. Returns whether it did.
    pub fn release(&mut self, id: BlockId) -> bool {
        let r = &mut self.refs[id as usize];
        debug_assert!(*r > 0, "release of a free block");
        *r -= 1;
        if *r == 0 {
            self.free.push(id);
            true
        } else {
            false
        }
    }

    /// Holders of `id`.
    pub fn ref_count(&self, id: BlockId) -> u32 {
        self.refs[id as usize]
    }

    fn layer_range(&self, layer: usize, values: bool) -> std::ops::Range<usize> {
        let half = self.spec.block_size * self.spec.row_bytes();
        let start = (2 * layer + values as usize) * half;
        start..start + half
    }

    fn block(&self, id: BlockId, layer: usize) -> KvBlock<'_> {
        let b = &self.blocks[id as usize];
        KvBlock {
            keys: &b[self.layer_range(layer, false)],
            values: &b[self.layer_range(layer, true)],
        }
    }

    fn store(&mut self, id: BlockId, layer: usize, row: usize, key: &[f32], value: &[f32]) {
        let rb = self.spec.row_bytes();
        let ty = self.spec.kv_type;
        let (kr, vr) = (
            self.layer_range(layer, false),
            self.layer_range(layer, true),
        );
        let b = &mut self.blocks[id as usize];
        ty.encode(key, &mut b[kr][row * rb..(row + 1) * rb]);
        ty.encode(value, &mut b[vr][row * rb..(row + 1) * rb]);
    }
}

/// KV storage for a set of sequences: a block pool and, per sequence id, its block table.
#[derive(Debug)]
pub struct KvCache {
    pool: KvPool,
    /// Indexed by sequence id.
    tables: Vec<Vec<BlockId>>,
}

impl KvCache {
    /// Storage for up to `capacity` blocks.
    pub fn new(spec: KvSpec, capacity: usize) -> Self {
        KvCache {
            pool: KvPool::new(spec, capacity),
            tables: Vec::new(),
        }
    }

    /// Storage for one sequence of up to `n_ctx` positions.
    pub fn for_context(spec: KvSpec, n_ctx: usize) -> Self {
        Self::new(spec, spec.blocks_for(n_ctx))
    }

    pub fn pool(&self) -> &KvPool {
        &self.pool
    }

    pub fn spec(&self) -> &KvSpec {
        &self.pool.spec
    }

    /// The block table of `seq` (empty when it holds nothing).
    pub fn blocks(&self, seq: usize) -> &[BlockId] {
        self.tables.get(seq).map_or(&[], |t| t.as_slice())
    }

    fn table(&mut self, seq: usize) -> &mut Vec<BlockId> {
        if self.tables.len() <= seq {
            self.tables.resize_with(seq + 1, Vec::new);
        }
        &mut self.tables[seq]
    }

    /// Makes room for positions `0..n_pos` of `seq`, taking blocks from the pool. On failure
    /// nothing is taken.
    pub fn reserve(&mut self, seq: usize, n_pos: usize) -> Result<()> {
        let need = self.pool.spec.blocks_for(n_pos);
        let have = self.blocks(seq).len();
        if need <= have {
            return Ok(());
        }
        if need - have > self.pool.available() {
            return Err(EngineError::KvFull {
                needed: need - have,
                available: self.pool.available(),
            });
        }
        for _ in have..need {
            let id = self.pool.alloc().expect("availability checked above");
            self.table(seq).push(id);
        }
        Ok(())
    }

    /// Appends shared blocks (a cached prefix) to the table of `seq`, one reference each.
    pub fn attach(&mut self, seq: usize, blocks: &[BlockId]) {
        for &id in blocks {
            self.pool.retain(id);
        }
        self.table(seq).extend_from_slice(blocks);
    }

    /// Keeps only the blocks that hold positions `0..n_pos` of `seq`; the rest go back to the
    /// pool (unless shared).
    pub fn truncate(&mut self, seq: usize, n_pos: usize) {
        let keep = self.pool.spec.blocks_for(n_pos);
        if let Some(t) = self.tables.get_mut(seq) {
            for id in t.drain(keep.min(t.len())..) {
                self.pool.release(id);
            }
        }
    }

    /// Frees every block of `seq`.
    pub fn release(&mut self, seq: usize) {
        self.truncate(seq, 0);
    }

    /// One more reference to `id` held by the caller (e.g. a prefix cache).
    pub fn retain_block(&mut self, id: BlockId) {
        self.pool.retain(id);
    }

    /// Drops a reference taken with [`KvCache::retain_block`]; returns whether the block was
    /// freed.
    pub fn release_block(&mut self, id: BlockId) -> bool {
        self.pool.release(id)
    }

    fn block_of(&self, seq: usize, pos: usize) -> BlockId {
        let bs = self.pool.spec.block_size;
        match self.blocks(seq).get(pos / bs) {
            Some(&id) => id,
            None => panic!("KV position {pos} of sequence {seq} was not reserved"),
        }
    }
}

impl KvView for KvCache {
    fn kv_type(&self) -> KvType {
        self.pool.spec.kv_type
    }

    fn block_size(&self) -> usize {
        self.pool.spec.block_size
    }

    fn store(&mut self, layer: usize, seq: usize, pos: usize, key: &[f32], value: &[f32]) {
        let id = self.block_of(seq, pos);
        debug_assert_eq!(
            self.pool.ref_count(id),
            1,
            "writing into a block other sequences share"
        );
        let row = pos % self.pool.spec.block_size;
        self.pool.store(id, layer, row, key, value);
    }

    fn block(&self, layer: usize, seq: usize, index: usize) -> KvBlock<'_> {
        let id = self.blocks(seq)[index];
        self.pool.block(id, layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kv_type: KvType) -> KvSpec {
        KvSpec {
            n_layers: 2,
            kv_dim: 64,
            head_dim: 32,
            kv_type,
            block_size: 4,
        }
    }

    #[test]
    fn reserve_store_read_back() {
        for ty in KvType::ALL {
            let mut kv = KvCache::new(spec(ty), 8);
            kv.reserve(3, 10).unwrap();
            assert_eq!(kv.blocks(3).len(), 3);
            let key: Vec<f32> = (0..64).map(|i| i as f32 * 0.25 - 8.0).collect();
            let value: Vec<f32> = key.iter().map(|x| -x).collect();
            kv.store(1, 3, 9, &key, &value);
            let b = kv.block(1, 3, 2);
            let rb = ty.row_bytes(64);
            let mut k = vec![0f32; 64];
            let mut v = vec![0f32; 64];
            ty.decode(&b.keys[rb..2 * rb], &mut k);
            ty.decode(&b.values[rb..2 * rb], &mut v);
            let tol = if ty == KvType::Q8_0 { 0.05 } else { 0.0 };
            for i in 0..64 {
                assert!((k[i] - key[i]).abs() <= tol, "{ty} key {i}");
                assert!((v[i] - value[i]).abs() <= tol, "{ty} value {i}");
            }
        }
    }

    #[test]
    fn blocks_are_shared_and_returned() {
        let mut kv = KvCache::new(spec(KvType::F16), 4);
        kv.reserve(0, 8).unwrap();
        assert_eq!(kv.pool().used(), 2);
        let prefix = kv.blocks(0).to_vec();
        kv.attach(1, &prefix[..1]);
        kv.reserve(1, 6).unwrap();
        assert_eq!(kv.pool().used(), 3);
        assert_eq!(kv.pool().ref_count(prefix[0]), 2);
        // Too much for the pool: an error, nothing taken.
        let err = kv.reserve(2, 9).unwrap_err();
        assert!(matches!(
            err,
            EngineError::KvFull {
                needed: 3,
                available: 1
            }
        ));
        assert_eq!(kv.pool().used(), 3);
        kv.release(0);
        assert_eq!(kv.pool().used(), 2, "the shared block stays");
        kv.release(1);
        assert_eq!(kv.pool().used(), 0);
        assert_eq!(kv.pool().available(), 4);
        // Freed blocks are reused before new memory is taken.
        kv.reserve(5, 12).unwrap();
        assert_eq!(
            kv.pool().allocated_bytes(),
            3 * spec(KvType::F16).block_bytes()
        );
    }

    #[test]
    fn q8_0_needs_whole_blocks_per_head() {
        let mut c = model::synthetic_config("stories15m").unwrap();
        c.head_dim = 8;
        assert!(KvSpec::new(&c, KvType::Q8_0).is_err());
        assert!(KvSpec::new(&c, KvType::F16).is_ok());
    }
}
