//! Per-thread buffers for packed weight panels, kept between matmul calls so the hot path does
//! not allocate.

use std::cell::RefCell;

/// A thread's panel buffers (grown on demand, never shrunk).
#[derive(Debug, Default)]
pub(crate) struct Panel {
    /// Float panels: `f32` rows.
    pub f: Vec<f32>,
    /// Quantized panels: offset bytes.
    pub q: Vec<u8>,
    /// Quantized panels: block scales.
    pub d: Vec<f32>,
    /// Quantized panels of types with mins (AMX tiles of K-quants): block mins.
    pub m: Vec<f32>,
    /// K-quant panels: unpacked super-blocks.
    pub k: Vec<crate::kquants::Unpacked>,
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
