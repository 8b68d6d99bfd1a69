//! The machine's memory read bandwidth, the ceiling of batch-1 decoding (which reads every
//! weight once per token): a read-only pass over a large buffer, split evenly over threads,
//! reading as the decode kernels read (`kernels::sum_words`: in order, prefetching ahead).

use std::time::Instant;

/// Size of the buffer [`BandwidthProbe::new`] allocates by default: 1 GiB, far beyond any
/// last-level cache.
pub const PROBE_BYTES: usize = 1 << 30;

/// A buffer allocated (and written, so its pages exist) once, read by each measurement.
pub struct BandwidthProbe {
    /// Anonymous memory with huge pages asked for: a probe made before every decode repetition
    /// (`herd bench`) then costs a few hundred page faults, not a quarter of a million.
    mem: formats::Storage,
}

impl BandwidthProbe {
    /// Allocates and fills `bytes` bytes (rounded down to whole 64-byte lines); an error when
    /// the memory cannot be had (see `formats::Storage::anon_filled`).
    pub fn new(bytes: usize) -> std::io::Result<Self> {
        let len = bytes / 64 * 64;
        let mem = formats::Storage::anon_filled(len, |b| {
            for (i, w) in b.chunks_exact_mut(8).enumerate() {
                w.copy_from_slice(&(i as u64).to_le_bytes());
            }
        })?;
        Ok(BandwidthProbe { mem })
    }

    /// The buffer as words (a fresh mapping is page-aligned, its length whole lines).
    fn words(&self) -> &[u64] {
        match self.mem.as_bytes() {
            [] => &[],
            b => bytemuck::cast_slice(b),
        }
    }

    /// Bytes one pass reads.
    pub fn bytes(&self) -> usize {
        self.words().len() * 8
    }

    /// Best of `passes` read passes over the whole buffer on `n_threads` threads, in bytes per
    /// second.
    pub fn measure(&self, n_threads: usize, passes: usize) -> f64 {
        let n_threads = n_threads.max(1);
        let words = self.words();
        let part = words.len().div_ceil(n_threads).max(8);
        let mut best = f64::INFINITY;
        for _ in 0..passes.max(1) {
            let t0 = Instant::now();
            let total = std::thread::scope(|s| {
                let handles: Vec<_> = words
                    .chunks(part)
                    .map(|c| s.spawn(move || kernels::sum_words(c)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a bandwidth reader thread panicked"))
                    .fold(0u64, u64::wrapping_add)
            });
            std::hint::black_box(total);
            best = best.min(t0.elapsed().as_secs_f64());
        }
        self.bytes() as f64 / best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_positive_rate() {
        let p = BandwidthProbe::new(1 << 20).unwrap();
        assert_eq!(p.bytes(), 1 << 20);
        for t in [1, 2, 3] {
            assert!(p.measure(t, 2) > 0.0);
        }
    }
}
