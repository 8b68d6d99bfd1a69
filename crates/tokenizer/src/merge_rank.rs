//! Rank-ordered BPE merging, as Hugging Face `tokenizers` and tiktoken do it.
//!
//! A word starts as a sequence of token ids (one per character or byte). The adjacent pair
//! with the lowest merge rank (its index in the merges list) is replaced by the merged token,
//! the leftmost one on ties, until no adjacent pair has a merge. Short words use a direct scan;
//! long ones a priority queue over a linked list (the same order, in O(n log n)).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::hash::FxHashMap;

/// Words up to this many symbols are merged by scanning for the best pair each time.
const SCAN_MAX: usize = 48;

/// No neighbour.
const NONE: u32 = u32::MAX;

/// Pair key: left id in the high half, right id in the low half.
#[inline]
fn key(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

/// The merges of a vocabulary: pair of ids -> (rank, merged id).
#[derive(Debug, Clone, Default)]
pub(crate) struct MergeTable {
    pairs: FxHashMap<u64, (u32, u32)>,
}

impl MergeTable {
    /// Adds merge number `rank` of `left` and `right` into `merged`. A pair listed twice keeps
    /// its last rank, as `tokenizers` does.
    pub(crate) fn insert(&mut self, left: u32, right: u32, rank: u32, merged: u32) {
        self.pairs.insert(key(left, right), (rank, merged));
    }

    /// Number of merges.
    pub(crate) fn len(&self) -> usize {
        self.pairs.len()
    }

    #[inline]
    fn get(&self, a: u32, b: u32) -> Option<(u32, u32)> {
        self.pairs.get(&key(a, b)).copied()
    }

    /// Merges `symbols` in place.
    pub(crate) fn merge(&self, symbols: &mut Vec<u32>) {
        if self.pairs.is_empty() || symbols.len() < 2 {
            return;
        }
        if symbols.len() <= SCAN_MAX {
            self.merge_scan(symbols);
        } else {
            self.merge_queue(symbols);
        }
    }

    fn merge_scan(&self, s: &mut Vec<u32>) {
        loop {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..s.len().saturating_sub(1) {
                if let Some((rank, id)) = self.get(s[i], s[i + 1]) {
                    let better = match best {
                        Some((r, _, _)) => rank < r,
                        None => true,
                    };
                    if better {
                        best = Some((rank, i, id));
                    }
                }
            }
            let Some((_, i, id)) = best else { return };
            s[i] = id;
            s.remove(i + 1);
        }
    }

    fn merge_queue(&self, s: &mut Vec<u32>) {
        let n = s.len();
        let mut prev: Vec<u32> = (0..n as u32).map(|i| i.wrapping_sub(1)).collect();
        let mut next: Vec<u32> = (1..=n as u32).collect();
        prev[0] = NONE;
        next[n - 1] = NONE;
        let mut alive = vec![true; n];
        // Min-heap on (rank, position).
        let mut queue = BinaryHeap::with_capacity(n);
        for i in 0..n - 1 {
            if let Some((rank, id)) = self.get(s[i], s[i + 1]) {
                queue.push(Reverse((rank, i as u32, id)));
            }
        }
        while let Some(Reverse((rank, pos, id))) = queue.pop() {
            let p = pos as usize;
            let r = next[p];
            if !alive[p] || r == NONE {
                continue;
            }
            // Stale unless the pair there is still the one queued (ranks identify pairs).
            if self.get(s[p], s[r as usize]) != Some((rank, id)) {
                continue;
            }
            s[p] = id;
            alive[r as usize] = false;
            let after = next[r as usize];
            next[p] = after;
            if after != NONE {
                prev[after as usize] = pos;
            }
            let before = prev[p];
            if before != NONE {
                if let Some((rk, m)) = self.get(s[before as usize], id) {
                    queue.push(Reverse((rk, before, m)));
                }
            }
            if after != NONE {
                if let Some((rk, m)) = self.get(id, s[after as usize]) {
                    queue.push(Reverse((rk, pos, m)));
                }
            }
        }
        let mut w = 0;
        for i in 0..n {
            if alive[i] {
                s[w] = s[i];
                w += 1;
            }
        }
        s.truncate(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pseudo-random table over ids 0..8 merging into 100+.
    fn table() -> MergeTable {
        let mut t = MergeTable::default();
        let mut x = 12345u32;
        let mut rank = 0;
        for a in 0..8 {
            for b in 0..8 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if (x >> 16) & 3 == 0 {
                    t.insert(a, b, rank, (a * 8 + b) % 8);
                    rank += 1;
                }
            }
        }
        t
    }

    #[test]
    fn scan_and_queue_agree() {
        let t = table();
        let mut x = 777u32;
        for len in [2usize, 3, 5, 17, 60, 200] {
            for _ in 0..50 {
                let word: Vec<u32> = (0..len)
                    .map(|_| {
                        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        (x >> 16) % 8
                    })
                    .collect();
                let mut a = word.clone();
                t.merge_scan(&mut a);
                let mut b = word.clone();
                t.merge_queue(&mut b);
                assert_eq!(a, b, "{word:?}");
            }
        }
    }

    #[test]
    fn lowest_rank_then_leftmost() {
        // a=0 b=1 c=2; ab=3 (rank 0), bc=4 (rank 1), aa=5 (rank 2).
        let mut t = MergeTable::default();
        t.insert(0, 1, 0, 3);
        t.insert(1, 2, 1, 4);
        t.insert(0, 0, 2, 5);
        let mut w = vec![0, 1, 2];
        t.merge(&mut w);
        assert_eq!(w, [3, 2]);
        let mut w = vec![0, 0, 0];
        t.merge(&mut w);
        assert_eq!(w, [5, 0]);
    }
}
