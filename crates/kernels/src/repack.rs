//! Layouts made at load time for the decode kernels: which stored types have one at the CPU's
//! level ([`repacked_type`]) and the copy itself ([`repack`], [`repack_into`]).
//!
//! - Q4_0 and Q8_0 become [`WeightType::Q4_0x16`] and [`WeightType::Q8_0x16`] (`qx16.rs`):
//!   rows stay rows, each a run of groups of 16 blocks with their scales first.
//! - Q2_K ... Q6_K become [`WeightType::Q2_Kx16`], [`WeightType::Q3_Kx16`],
//!   [`WeightType::Q4_Kx16`], [`WeightType::Q5_Kx16`] and [`WeightType::Q6_Kx16`]
//!   (`kquants/x16.rs`): rows go sixteen side by side, one per 32-bit lane; matrices whose row
//!   count is not a multiple of 16 keep their layout.
//!
//! All of them at the AVX2 level and above (`avx2_x16.rs`, `avx512_x16.rs`, `kquants/avx2_x16.rs`,
//! `kquants/avx512_x16.rs`); the scalar level keeps the stored layouts. All give prefill (the
//! tile path) bitwise the stored results.

use crate::{WeightType, WeightView};

/// The layout [`repack`] turns a matrix of `ty` with `n_rows` rows into where that pays with
/// the kernels of [`crate::isa`]; `None`: keep the stored bytes.
pub fn repacked_type(ty: WeightType, n_rows: usize) -> Option<WeightType> {
    let layout = layout(ty)?;
    let has_kernels = crate::isa() != crate::Isa::Scalar;
    let whole_groups = !layout.is_grouped() || n_rows.is_multiple_of(crate::kquants::X16_ROWS);
    (has_kernels && whole_groups).then_some(layout)
}

/// The repacked layout of stored `ty`, at any level.
fn layout(ty: WeightType) -> Option<WeightType> {
    match ty {
        WeightType::Q4_0 => Some(WeightType::Q4_0x16),
        WeightType::Q8_0 => Some(WeightType::Q8_0x16),
        WeightType::Q2_K => Some(WeightType::Q2_Kx16),
        WeightType::Q3_K => Some(WeightType::Q3_Kx16),
        WeightType::Q4_K => Some(WeightType::Q4_Kx16),
        WeightType::Q5_K => Some(WeightType::Q5_Kx16),
        WeightType::Q6_K => Some(WeightType::Q6_Kx16),
        _ => None,
    }
}

/// The bytes of `w` in the layout `repacked_type(w.ty, w.n_rows)` names (at any level), a
/// matrix of the same shape.
///
/// # Panics
/// When `w` has no repacked layout or its bytes do not match its shape.
pub fn repack(w: &WeightView) -> Vec<u8> {
    let ty = layout(w.ty).unwrap_or_else(|| panic!("{:?} has no repacked layout", w.ty));
    let mut out = vec![0u8; w.n_rows * ty.row_bytes(w.n_cols)];
    repack_into(w, &mut out);
    out
}

/// [`repack`] into `out` (`w.n_rows · ty.row_bytes(w.n_cols)` bytes for the repacked `ty`,
/// any contents), in parallel.
///
/// # Panics
/// When `w` has no repacked layout, its bytes do not match its shape or `out` has another
/// length.
pub fn repack_into(w: &WeightView, out: &mut [u8]) {
    let ty = layout(w.ty).unwrap_or_else(|| panic!("{:?} has no repacked layout", w.ty));
    w.assert_bytes_fit();
    assert_eq!(
        out.len(),
        w.n_rows * ty.row_bytes(w.n_cols),
        "repacked bytes of {} rows",
        w.n_rows
    );
    if out.is_empty() {
        return;
    }
    match crate::qx16::X16::of(ty) {
        Some(kind) => crate::qx16::repack_into(w, kind, out),
        None => crate::kquants::x16::repack_into(w, ty, out),
    }
}
