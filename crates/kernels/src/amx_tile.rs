//! The AMX int8 tile kernel of the Q8_0 / Q4_0 prefill (`amx.rs`): 16 weight rows × 16 tokens
//! over a run of 32-value blocks, one tile product (`tdpbssd`) per block, the block's exact
//! integer sums scaled and added in `f32` by an AVX-512 epilogue. Scalar twin:
//! [`crate::amx::tile_q8_scalar`], same float operations in the same order (bitwise equal).
//!
//! Stable Rust has no AMX intrinsics, so the tile instructions are written with `asm!`. The tile
//! registers are invisible to the compiler, which never uses them itself: values left in them by
//! one `asm!` block are still there in the next one on the same thread. What this module relies
//! on:
//!
//! - a [`TileScope`] (built only from the [`Amx`] proof token, not `Send`) has loaded this
//!   thread's tile configuration [`CONFIG`]; every tile instruction here runs inside one;
//! - tile operands and their memory: each `tileloadd` reads 16 rows of 32 bytes (weights,
//!   stride 32) or 8 rows of 64 bytes (activations, stride 64) from a 512-byte tile the caller
//!   checked in bounds; each `tilestored` writes 16 rows of 64 bytes into a local buffer.
//!
//! Tile registers (`CONFIG`): `tmm0`, `tmm1` the block sums C (16 rows × 16 int32), `tmm2`, `tmm3`
//! the weights A (16 rows × 32 int8), `tmm4`, `tmm5` the activations B (8 rows × 16 tokens × 4
//! int8, the layout `tdpbssd` wants for its second operand). Blocks alternate between the sets
//! (0, 2, 4) and (1, 3, 5) so that block `b + 1`'s product runs while block `b`'s sums go
//! through the epilogue.

use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::Cell;
use std::marker::PhantomData;

use crate::cpu::Amx;

/// Weight rows of a tile (rows of C).
pub(crate) const TILE_ROWS: usize = 16;
/// Tokens of a tile (int32 columns of C).
pub(crate) const TILE_TOKENS: usize = 16;
/// Bytes of one block's weight tile (16 rows × 32) or activation tile (8 × 64).
pub(crate) const TILE_BYTES: usize = 512;

/// `ldtilecfg`'s 64-byte operand: palette 1, then `colsb` (bytes per row) of tiles 0..16 as
/// little-endian `u16` from byte 16, then `rows` of tiles 0..16 from byte 48.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

const fn tile_config() -> TileConfig {
    let mut c = [0u8; 64];
    c[0] = 1; // palette 1: 8 tiles of up to 16 rows × 64 bytes
              // (tile, rows, bytes per row)
    let tiles: [(usize, u8, u16); 6] = [
        (0, 16, 64), // C, even blocks
        (1, 16, 64), // C, odd blocks
        (2, 16, 32), // A (weights), even blocks
        (3, 16, 32), // A, odd blocks
        (4, 8, 64),  // B (activations), even blocks
        (5, 8, 64),  // B, odd blocks
    ];
    let mut i = 0;
    while i < tiles.len() {
        let (t, rows, colsb) = tiles[i];
        c[16 + 2 * t] = colsb as u8;
        c[17 + 2 * t] = (colsb >> 8) as u8;
        c[48 + t] = rows;
        i += 1;
    }
    TileConfig(c)
}

static CONFIG: TileConfig = tile_config();

thread_local! {
    /// Live [`TileScope`]s of this thread.
    static SCOPES: Cell<usize> = const { Cell::new(0) };
}

/// Proof that this thread's tile configuration is [`CONFIG`]; releases the tiles (back to the
/// initial state, which makes context switches cheap again) when the thread's last one drops.
pub(crate) struct TileScope {
    /// Tile configuration is per thread: a scope must not move to another one.
    _not_send: PhantomData<*const ()>,
}

impl TileScope {
    pub(crate) fn new(_: Amx) -> TileScope {
        // SAFETY: the token proves AMX-TILE is present and the tile state granted to this
        // process; CONFIG is a valid palette-1 configuration (rows ≤ 16, bytes per row ≤ 64) and
        // 64 bytes long. Reloading it (nested scopes) only zeroes tile data no kernel holds
        // between calls.
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly, preserves_flags));
        }
        SCOPES.with(|s| s.set(s.get() + 1));
        TileScope {
            _not_send: PhantomData,
        }
    }
}

impl Drop for TileScope {
    fn drop(&mut self) {
        let left = SCOPES.with(|s| {
            s.set(s.get() - 1);
            s.get()
        });
        if left == 0 {
            // SAFETY: AMX-TILE is present (a scope exists only with the token).
            unsafe { asm!("tilerelease", options(nomem, nostack, preserves_flags)) };
        }
    }
}

/// `acc[r][t] += Σ_b s[b][r][t] · (ad[b][t] · wd[b][r])` over the `nb` blocks of the slices, in
/// block order, each step one fused multiply-add, where `s` is the exact integer sum of the 32
/// products of block `b` of weight row `r` and token `t`.
///
/// - `w`: `nb` weight tiles, 16 rows × 32 int8 each (row-major, 512 bytes);
/// - `wd`: `nb × 16` weight block scales;
/// - `a`: `nb` activation tiles, `[k: 8][t: 16][4]` int8 (values `4k..4k+4` of the block);
/// - `ad`: `nb × 16` activation block scales.
pub(crate) fn tile_q8(
    _: &TileScope,
    w: &[u8],
    wd: &[f32],
    a: &[u8],
    ad: &[f32],
    acc: &mut [[f32; TILE_TOKENS]; TILE_ROWS],
) {
    let nb = wd.len() / TILE_ROWS;
    assert!(
        wd.len() == nb * TILE_ROWS
            && ad.len() == nb * TILE_TOKENS
            && w.len() == nb * TILE_BYTES
            && a.len() == nb * TILE_BYTES
    );
    if nb == 0 {
        return;
    }
    // SAFETY: the scope proves the tile configuration (and, through its token, AVX-512 for the
    // epilogue); every length is checked above.
    unsafe { tile_q8_amx(w.as_ptr(), wd.as_ptr(), a.as_ptr(), ad.as_ptr(), nb, acc) }
}

/// How many blocks ahead the weight tiles are prefetched.
const PREFETCH_BLOCKS: usize = 4;

/// C tiles are stored here (16 rows × 16 int32) for the epilogue.
#[repr(C, align(64))]
struct Sums([i32; TILE_ROWS * TILE_TOKENS]);

/// Block product into the tile set (`$c`, `$a`, `$b`): zero C, load A from `$w` (stride 32) and
/// B from `$x` (stride 64), C += A · B with signed bytes on both sides.
macro_rules! product {
    ($c:literal, $a:literal, $b:literal, $w:expr, $x:expr) => {
        asm!(
            concat!("tilezero tmm", $c),
            concat!("tileloadd tmm", $a, ", [{w} + {sw}*1]"),
            concat!("tileloadd tmm", $b, ", [{x} + {sx}*1]"),
            concat!("tdpbssd tmm", $c, ", tmm", $a, ", tmm", $b),
            w = in(reg) $w,
            sw = in(reg) 32usize,
            x = in(reg) $x,
            sx = in(reg) 64usize,
            options(nostack, readonly, preserves_flags)
        )
    };
}

/// Stores C tile `$c` into the 1024-byte buffer at `$p` (stride 64).
macro_rules! store {
    ($c:literal, $p:expr) => {
        asm!(
            concat!("tilestored [{p} + {s}*1], tmm", $c),
            p = in(reg) $p,
            s = in(reg) 64usize,
            options(nostack, preserves_flags)
        )
    };
}

/// # Safety
/// This thread's tile configuration is [`CONFIG`]; AVX-512 F available; `w` and `a` hold `nb`
/// tiles of 512 bytes, `wd` and `ad` `nb × 16` scales; `nb > 0`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn tile_q8_amx(
    w: *const u8,
    wd: *const f32,
    a: *const u8,
    ad: *const f32,
    nb: usize,
    acc: &mut [[f32; TILE_TOKENS]; TILE_ROWS],
) {
    let mut sums = Sums([0; TILE_ROWS * TILE_TOKENS]);
    let sp = sums.0.as_mut_ptr();
    let mut av = [_mm512_setzero_ps(); TILE_ROWS];
    for (v, row) in av.iter_mut().zip(acc.iter()) {
        // SAFETY: each row of acc holds 16 values.
        *v = unsafe { _mm512_loadu_ps(row.as_ptr()) };
    }
    // SAFETY: tile b of `w` and `a` lies at b · 512 < nb · 512; the tile configuration is loaded.
    unsafe {
        product!(0, 2, 4, w, a);
        for b in 1..nb {
            let (wb, xb) = (w.add(b * TILE_BYTES), a.add(b * TILE_BYTES));
            if b + PREFETCH_BLOCKS < nb {
                // The weight tiles come from L2 (the activation tiles of a pass stay in L1).
                let ahead = wb.add(PREFETCH_BLOCKS * TILE_BYTES);
                for line in 0..TILE_BYTES / 64 {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.add(line * 64) as *const i8);
                }
            }
            if b & 1 == 1 {
                product!(1, 3, 5, wb, xb);
                store!(0, sp);
            } else {
                product!(0, 2, 4, wb, xb);
                store!(1, sp);
            }
            epilogue(&mut av, sp, wd, ad, b - 1);
        }
        if (nb - 1) & 1 == 0 {
            store!(0, sp);
        } else {
            store!(1, sp);
        }
    }
    // SAFETY: block nb − 1 is in bounds; `sums` holds its sums.
    unsafe { epilogue(&mut av, sp, wd, ad, nb - 1) };
    for (v, row) in av.iter().zip(acc.iter_mut()) {
        // SAFETY: each row of acc holds 16 values.
        unsafe { _mm512_storeu_ps(row.as_mut_ptr(), *v) };
    }
}

/// Block `b`'s sums (16 rows × 16 tokens at `sums`) into the accumulators: one conversion, one
/// multiply (the 16 tokens' scales by the row's scale) and one fused multiply-add per row.
///
/// # Safety
/// AVX-512 F available; `sums` holds 256 int32 (64-byte aligned); `wd` and `ad` hold block `b`'s
/// 16 scales.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn epilogue(
    av: &mut [__m512; TILE_ROWS],
    sums: *const i32,
    wd: *const f32,
    ad: *const f32,
    b: usize,
) {
    // SAFETY: as the caller promises.
    unsafe {
        let dav = _mm512_loadu_ps(ad.add(b * TILE_TOKENS));
        for (r, v) in av.iter_mut().enumerate() {
            let s = _mm512_cvtepi32_ps(_mm512_load_si512(sums.add(r * TILE_TOKENS) as *const _));
            let scale = _mm512_mul_ps(dav, _mm512_set1_ps(*wd.add(b * TILE_ROWS + r)));
            *v = _mm512_fmadd_ps(s, scale, *v);
        }
    }
}
