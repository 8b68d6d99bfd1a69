//! The prefix cache: full KV blocks of prompt tokens, found again by content.
//!
//! Block `b` of a prompt is keyed by `hash(key of block b-1, tokens of block b)`, so a key
//! stands for the whole prefix up to the end of its block. The cache holds one reference on
//! each block it keeps; a block no sequence holds any more (reference count 1) can be evicted,
//! least recently used first. Entries also keep their tokens and parent key, and a lookup
//! compares them, so a hash collision cannot attach the wrong keys and values.

use std::collections::HashMap;

use crate::{BlockId, KvCache};

/// A 128-bit content key.
pub(super) type BlockKey = u128;

/// FNV-1a over 128 bits.
const FNV_OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
const FNV_PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

/// The key of a block holding `tokens`, after the block keyed `parent` (`None` for the first).
pub(super) fn block_key(parent: Option<BlockKey>, tokens: &[u32]) -> BlockKey {
    let mut h = FNV_OFFSET;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u128;
            h = h.wrapping_mul(FNV_PRIME);
        }
    };
    match parent {
        Some(p) => {
            eat(&[1]);
            eat(&p.to_le_bytes());
        }
        None => eat(&[0]),
    }
    for t in tokens {
        eat(&t.to_le_bytes());
    }
    h
}

/// Keys of the full blocks of `tokens`, in order.
pub(super) fn block_keys(tokens: &[u32], block_size: usize) -> Vec<BlockKey> {
    let mut parent = None;
    tokens
        .chunks_exact(block_size)
        .map(|blk| {
            let k = block_key(parent, blk);
            parent = Some(k);
            k
        })
        .collect()
}

struct Entry {
    block: BlockId,
    parent: Option<BlockKey>,
    tokens: Vec<u32>,
    /// Position of the block in its prompt: deeper blocks go first among equally old ones.
    depth: usize,
    last_used: u64,
}

#[derive(Default)]
pub(super) struct PrefixCache {
    entries: HashMap<BlockKey, Entry>,
    clock: u64,
}

impl PrefixCache {
    /// Blocks the cache keeps.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The cached blocks of the longest cached prefix of `tokens`, at most `max_blocks`
    /// of them; marks them used.
    pub fn lookup(&mut self, tokens: &[u32], block_size: usize, max_blocks: usize) -> Vec<BlockId> {
        self.clock += 1;
        let mut out = Vec::new();
        let mut parent = None;
        for blk in tokens.chunks_exact(block_size).take(max_blocks) {
            let key = block_key(parent, blk);
            match self.entries.get_mut(&key) {
                Some(e) if e.parent == parent && e.tokens == blk => {
                    e.last_used = self.clock;
                    out.push(e.block);
                }
                _ => break,
            }
            parent = Some(key);
        }
        out
    }

    /// Keeps `block` (full, holding `tokens` after the prefix keyed `parent`) under `key`,
    /// taking a reference. Returns false when the key is already cached (by another block).
    pub fn insert(
        &mut self,
        kv: &mut KvCache,
        key: BlockKey,
        parent: Option<BlockKey>,
        tokens: &[u32],
        depth: usize,
        block: BlockId,
    ) -> bool {
        if self.entries.contains_key(&key) {
            return false;
        }
        self.clock += 1;
        kv.retain_block(block);
        self.entries.insert(
            key,
            Entry {
                block,
                parent,
                tokens: tokens.to_vec(),
                depth,
                last_used: self.clock,
            },
        );
        true
    }

    /// Blocks only the cache holds (they can be evicted).
    pub fn evictable(&self, kv: &KvCache) -> usize {
        self.entries
            .values()
            .filter(|e| kv.pool().ref_count(e.block) == 1)
            .count()
    }

    /// Drops the least recently used block no sequence holds; returns false when there is
    /// none.
    pub fn evict_one(&mut self, kv: &mut KvCache) -> bool {
        let victim = self
            .entries
            .iter()
            .filter(|(_, e)| kv.pool().ref_count(e.block) == 1)
            .min_by_key(|(_, e)| (e.last_used, std::cmp::Reverse(e.depth)))
            .map(|(&k, _)| k);
        match victim {
            Some(k) => {
                let e = self.entries.remove(&k).expect("victim is an entry");
                kv.release_block(e.block);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KvSpec;
    use model::KvType;

    fn kv(blocks: usize) -> KvCache {
        let spec = KvSpec {
            n_layers: 1,
            kv_dim: 8,
            head_dim: 8,
            kv_type: KvType::F32,
            block_size: 4,
        };
        KvCache::new(spec, blocks)
    }

    #[test]
    fn keys_chain_over_the_whole_prefix() {
        let a = block_keys(&[1, 2, 3, 4, 5, 6, 7, 8], 4);
        let b = block_keys(&[9, 2, 3, 4, 5, 6, 7, 8], 4);
        assert_eq!(a.len(), 2);
        assert_ne!(a[0], b[0]);
        assert_ne!(a[1], b[1], "same tokens after a different prefix");
        assert_eq!(block_keys(&[1, 2, 3, 4, 5], 4), a[..1]);
    }

    #[test]
    fn lookup_insert_evict() {
        let mut kv = kv(4);
        let mut pc = PrefixCache::default();
        let prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        kv.reserve(0, prompt.len()).unwrap();
        let blocks = kv.blocks(0).to_vec();
        let keys = block_keys(&prompt, 4);
        let mut parent = None;
        for (b, k) in keys.iter().enumerate() {
            let toks = &prompt[b * 4..b * 4 + 4];
            assert!(pc.insert(&mut kv, *k, parent, toks, b, blocks[b]));
            parent = Some(*k);
        }
        assert!(!pc.insert(&mut kv, keys[0], None, &prompt[..4], 0, blocks[2]));
        assert_eq!(pc.lookup(&prompt, 4, 2), blocks[..2]);
        assert_eq!(pc.lookup(&prompt, 4, 1), blocks[..1]);
        assert_eq!(pc.lookup(&[1, 2, 3, 4, 0, 6, 7, 8], 4, 2), blocks[..1]);
        assert!(pc.lookup(&[0, 2, 3, 4], 4, 1).is_empty());
        assert_eq!(pc.evictable(&kv), 0, "the sequence still holds them");
        kv.release(0);
        assert_eq!(kv.pool().used(), 2, "cached blocks stay");
        assert_eq!(pc.evictable(&kv), 2);
        // The deeper block goes first.
        assert!(pc.evict_one(&mut kv));
        assert_eq!(pc.lookup(&prompt, 4, 2), blocks[..1]);
        assert!(pc.evict_one(&mut kv));
        assert!(!pc.evict_one(&mut kv));
        assert_eq!(kv.pool().used(), 0);
        assert_eq!(pc.len(), 0);
    }
}
