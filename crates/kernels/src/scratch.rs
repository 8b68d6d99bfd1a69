//! Per-thread buffers for packed weight panels, kept between matmul calls so the hot path does
//! not allocate.

use std::cell::RefCell;

/// A thread's panel buffers (grown on demand, never shrunk).
#[derive(Debug, Default)]
pub(crate) struct Panel {
    /// Float panels: `f32` rows.
    pub f: Vec<f32>,
    /// Quantized panels: offset bytes, on 64-byte boundaries (rows of whole 64-byte vectors
    /// then load without splitting cache lines).
    pub q: AlignedBytes,
    /// Quantized panels: block scales.
    pub d: Vec<f32>,
    /// Quantized panels of types with mins (AMX tiles of K-quants): block mins.
    pub m: Vec<f32>,
}

thread_local! {
    static PANEL: RefCell<Panel> = RefCell::new(Panel::default());
}

/// Runs `f` with this thread's panel buffers (a fresh set if they are already in use).
pub(crate) fn with_panel<R>(f: impl FnOnce(&mut Panel) -> R) -> R {
    PANEL.with(|p| match p.try_borrow_mut() {
        Ok(mut panel) => f(&mut panel),
        Err(_) => f(&mut Panel::default()),
    })
}

/// `v` resized to exactly `n` elements (contents unspecified).
pub(crate) fn sized<T: Copy + Default>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    if v.len() < n {
        v.resize(n, T::default());
    }
    &mut v[..n]
}

/// Spare buffers a thread keeps at most ([`AlignedBytes::recycle`]).
const SPARE_BUFFERS: usize = 16;
/// Largest buffer kept as a spare: a decode step's activations of the widest models (Llama-2's
/// 11008 or Llama 3's 14336 values, a few per product) fit many times.
const SPARE_MAX_BYTES: usize = 64 << 10;

thread_local! {
    static SPARE: RefCell<Vec<AlignedBytes>> = const { RefCell::new(Vec::new()) };
}

/// One cache line.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Line([u8; 64]);

impl Default for Line {
    fn default() -> Line {
        Line([0; 64])
    }
}

/// Bytes whose start is on a 64-byte boundary: the panels and activations the SIMD kernels
/// load 64 bytes at a time (a load that splits two cache lines costs about a third of the tile
/// kernels' throughput, measured).
#[derive(Clone, Debug, Default)]
pub(crate) struct AlignedBytes {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedBytes {
    /// `n` zero bytes.
    pub(crate) fn zeroed(n: usize) -> AlignedBytes {
        AlignedBytes {
            lines: vec![Line::default(); n.div_ceil(64)],
            len: n,
        }
    }

    /// As [`sized`]: the first `n` bytes, grown on demand (contents unspecified).
    pub(crate) fn sized(&mut self, n: usize) -> &mut [u8] {
        if self.lines.len() * 64 < n {
            self.lines.resize(n.div_ceil(64), Line::default());
        }
        self.len = n;
        &mut self[..]
    }

    /// `n` zero bytes in a buffer this thread handed back earlier ([`AlignedBytes::recycle`]),
    /// when it holds one large enough; else fresh ones. Decode quantizes the input of every
    /// product (four per layer), and the allocator's aligned allocations, frees and
    /// consolidations of those buffers took about 3% of the samples of a stories15M decode at
    /// two threads, on the calling thread, while the other thread waited.
    pub(crate) fn zeroed_reused(n: usize) -> AlignedBytes {
        let spare = SPARE.with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            let i = s.iter().position(|b| b.lines.len() * 64 >= n)?;
            Some(s.swap_remove(i))
        });
        match spare {
            Some(mut b) => {
                b.sized(n).fill(0);
                b
            }
            None => AlignedBytes::zeroed(n),
        }
    }

    /// Hands the buffer to this thread's spares for [`AlignedBytes::zeroed_reused`] (kept
    /// only when small, [`SPARE_MAX_BYTES`], and while the thread has few, [`SPARE_BUFFERS`]:
    /// a prompt's large buffers go back to the allocator).
    pub(crate) fn recycle(self) {
        if self.lines.is_empty() || self.lines.len() * 64 > SPARE_MAX_BYTES {
            return;
        }
        SPARE.with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                if s.len() < SPARE_BUFFERS {
                    s.push(self);
                }
            }
        });
    }

    /// The bytes as `i8`.
    pub(crate) fn as_i8(&self) -> &[i8] {
        bytemuck::cast_slice(&self[..])
    }

    /// The bytes as `i8`, to write.
    pub(crate) fn as_i8_mut(&mut self) -> &mut [i8] {
        bytemuck::cast_slice_mut(&mut self[..])
    }
}

impl std::ops::Deref for AlignedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `Line` is 64 plain bytes with no padding, and `len ≤ 64 · lines.len()`.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const u8, self.len) }
    }
}

impl std::ops::DerefMut for AlignedBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and the borrow is unique.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut u8, self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_bytes_start_on_a_line_and_keep_their_length() {
        let mut b = AlignedBytes::zeroed(100);
        assert_eq!((b.len(), b.as_ptr() as usize % 64), (100, 0));
        assert!(b.iter().all(|&v| v == 0));
        b[99] = 7;
        assert_eq!(b.as_i8()[99], 7);
        let s = b.sized(1000);
        assert_eq!(s.len(), 1000);
        assert_eq!(s.as_ptr() as usize % 64, 0);
        assert_eq!(b.sized(10).len(), 10);
        assert_eq!(AlignedBytes::zeroed(0).len(), 0);
    }

    /// A recycled buffer comes back zeroed, on a line, of the length asked for.
    #[test]
    fn reused_buffers_come_back_zeroed() {
        let mut b = AlignedBytes::zeroed_reused(300);
        b.fill(9);
        let at = b.as_ptr();
        b.recycle();
        let c = AlignedBytes::zeroed_reused(200);
        assert_eq!(c.as_ptr(), at, "the spare is taken");
        assert_eq!((c.len(), c.as_ptr() as usize % 64), (200, 0));
        assert!(c.iter().all(|&v| v == 0));
        let d = AlignedBytes::zeroed_reused(1000);
        assert_eq!(d.len(), 1000);
        assert!(d.iter().all(|&v| v == 0));
        AlignedBytes::zeroed(SPARE_MAX_BYTES + 64).recycle();
        assert!(SPARE.with(|s| s
            .borrow()
            .iter()
            .all(|b| b.lines.len() * 64 <= SPARE_MAX_BYTES)));
    }
}
