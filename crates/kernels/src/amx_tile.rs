//! The AMX int8 tile kernel of the Q8_0 / Q4_0 and K-quant prefill (`amx.rs`): 16 weight rows ×
//! one or two groups of 16 tokens over a run of 32-value blocks, one tile product (`tdpbssd`) per
//! block and token group, the block's exact integer sums scaled (and, for K-quants with mins, the
//! min term subtracted) in `f32` by an AVX-512 epilogue. Scalar twin:
//! [`crate::amx::tile_q8_scalar`], same float operations in the same order (bitwise equal).
//!
//! The kernel issues its tile instructions through [`TileUnit`]: the tile unit itself under a
//! [`TileScope`], or in tests [`EmulatedTiles`], a software model of it, so that everything
//! but the `asm!` blocks is run and compared with the twin on any AVX-512 machine.
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
//! Tile registers (`CONFIG`): `tmm0`..`tmm3` the block sums C (16 rows × 16 int32), `tmm4` the
//! weights A (16 rows × 32 int8), `tmm5`, `tmm6` the activations B of the two token groups (8
//! rows × 16 tokens × 4 int8, the layout `tdpbssd` wants for its second operand). Even blocks
//! sum into `tmm0` / `tmm1`, odd ones into `tmm2` / `tmm3`, so that block `b + 1`'s products run
//! while block `b`'s sums go through the epilogue. Two token groups per weight tile: the tile
//! loads and stores, not the products, bound the tile unit, and the pair shares one weight load.

use std::arch::x86_64::*;

/// Weight rows of a tile (rows of C).
pub(crate) const TILE_ROWS: usize = 16;
/// Tokens of a tile (int32 columns of C).
pub(crate) const TILE_TOKENS: usize = 16;
/// Bytes of one block's weight tile (16 rows × 32) or activation tile (8 × 64).
pub(crate) const TILE_BYTES: usize = 512;

/// The integer sums' scaled corrections of weight types with mins (K-quants `Q2_K`, `Q4_K`,
/// `Q5_K`): per weight tile, the 16 rows' `dmin · min` and, per token group, the 16 tokens'
/// `d_a · Σ a` over the tile's values.
pub(crate) struct Mins<'a, const G: usize> {
    pub w: &'a [f32],
    pub a: [&'a [f32]; G],
}

/// For each of the `G` (1 or 2) token groups `g`: `acc[g][r][t] += Σ_b s · (ad[g][b'][t] ·
/// wd[b][r])`, then `− wm[b][r] · am[g][b][t]` where the weights have mins, over the `nt` weight
/// tiles `b` of the slices, in tile order, each step one fused multiply-add (two with mins),
/// where `s` is the exact integer sum of the 32 products of tile `b`'s row `r` and token `t`'s
/// activation block `b' = b` — or, with `half` (weights of 16-value blocks, each tile holding one
/// block's values in its half of 32 and zeros in the other), `b' = b / 2`. Each (row, token) sees
/// the same operations whatever `G` is.
///
/// - `w`: `nt` weight tiles, 16 rows × 32 int8 each (row-major, 512 bytes);
/// - `wd`: `nt × 16` weight block scales;
/// - `a[g]`: `nt` (`nt / 2` with `half`) activation tiles, `[k: 8][t: 16][4]` int8 (values
///   `4k..4k+4` of the block);
/// - `ad[g]`: their `× 16` activation block scales;
/// - `mins`: `nt × 16` values each.
#[allow(clippy::too_many_arguments)]
pub(crate) fn tile_q8<U: TileUnit, const G: usize>(
    unit: &U,
    w: &[u8],
    wd: &[f32],
    a: [&[u8]; G],
    ad: [&[f32]; G],
    half: bool,
    mins: Option<Mins<'_, G>>,
    acc: [&mut [[f32; TILE_TOKENS]; TILE_ROWS]; G],
) {
    assert!(G == 1 || G == 2);
    let nt = checked_tiles(w, wd, a, ad, half, mins.as_ref());
    if nt == 0 {
        return;
    }
    let (wp, ap, dp) = (w.as_ptr(), a.map(|a| a.as_ptr()), ad.map(|d| d.as_ptr()));
    let (wm, am) = match &mins {
        Some(m) => (m.w.as_ptr(), m.a.map(|a| a.as_ptr())),
        None => (std::ptr::null(), [std::ptr::null(); G]),
    };
    type Kernel<U, const G: usize> = unsafe fn(
        &U,
        *const u8,
        *const f32,
        [*const u8; G],
        [*const f32; G],
        *const f32,
        [*const f32; G],
        usize,
        [&mut [[f32; TILE_TOKENS]; TILE_ROWS]; G],
    );
    let kernel: Kernel<U, G> = match (half, mins.is_some()) {
        (false, false) => tile_q8_amx::<U, G, false, false>,
        (false, true) => tile_q8_amx::<U, G, false, true>,
        (true, false) => tile_q8_amx::<U, G, true, false>,
        (true, true) => tile_q8_amx::<U, G, true, true>,
    };
    // SAFETY: the unit proves the tile configuration and AVX-512 for the epilogue (`TileUnit`);
    // every length is checked above, the min pointers are read only with mins.
    unsafe { kernel(unit, wp, wd.as_ptr(), ap, dp, wm, am, nt, acc) }
}

/// The number of weight tiles `nt` of a [`tile_q8`] call (and of the VNNI kernel's), after
/// checking every slice against it: `w` `nt` tiles, `wd` `nt × 16` scales, each `a[g]` and
/// `ad[g]` `nt` (`nt / 2` with `half`, `nt` even) tiles and `× 16` scales, `mins` `nt × 16`
/// values each.
pub(crate) fn checked_tiles<const G: usize>(
    w: &[u8],
    wd: &[f32],
    a: [&[u8]; G],
    ad: [&[f32]; G],
    half: bool,
    mins: Option<&Mins<'_, G>>,
) -> usize {
    let nt = wd.len() / TILE_ROWS;
    let na = if half { nt / 2 } else { nt };
    assert!(wd.len() == nt * TILE_ROWS && w.len() == nt * TILE_BYTES);
    assert!(!half || nt.is_multiple_of(2));
    assert!(a.iter().all(|a| a.len() == na * TILE_BYTES));
    assert!(ad.iter().all(|d| d.len() == na * TILE_TOKENS));
    if let Some(m) = mins {
        assert!(m.w.len() == nt * TILE_ROWS);
        assert!(m.a.iter().all(|a| a.len() == nt * TILE_TOKENS));
    }
    nt
}

/// How many blocks ahead the weight tiles are prefetched.
const PREFETCH_BLOCKS: usize = 4;

/// C tiles are stored here (per token group, 16 rows × 16 int32) for the epilogue.
#[repr(C, align(64))]
struct Sums([[i32; TILE_ROWS * TILE_TOKENS]; 2]);

/// The tile instructions [`tile_q8`] issues: the tile unit's ([`TileScope`]), or in tests a
/// software model of it ([`EmulatedTiles`]), so that the kernel around them (the blocks'
/// order, the C tiles of each parity, the AVX-512 epilogue) runs and is checked on machines
/// without AMX. C tiles are `tmm0`..`tmm3` ([`CONFIG`]); `c` is 0 or 2 for the products.
///
/// # Safety
/// A value of an implementing type exists only where AVX-512 F is available (the epilogue)
/// and, for the tile unit, while this thread's tile configuration is [`CONFIG`]; each method
/// does exactly what it says, on this thread's tiles.
pub(crate) unsafe trait TileUnit {
    /// Block product of one token group into C tile `c`: zero it, then `+=` A (16 rows of 32
    /// signed bytes at `w`, stride 32) · B (8 rows of 64 signed bytes at `x`, stride 64).
    ///
    /// # Safety
    /// `w` and `x` each point at 512 readable bytes.
    unsafe fn product1(&self, c: usize, w: *const u8, x: *const u8);
    /// The same for two token groups with one weight tile: B from `x[0]` into C tile `c`, from
    /// `x[1]` into `c + 1`.
    ///
    /// # Safety
    /// As [`TileUnit::product1`], for `w` and both of `x`.
    unsafe fn product2(&self, c: usize, w: *const u8, x: [*const u8; 2]);
    /// C tile `c` (0..4) into the 1024 bytes at `p` (16 rows of 16 int32).
    ///
    /// # Safety
    /// `p` points at 1024 writable bytes.
    unsafe fn store(&self, c: usize, p: *mut i32);
}

/// A software model of the tile unit for tests: eight tiles shaped by [`CONFIG`] (as
/// `ldtilecfg` would shape them), `tilezero`, `tileloadd`, `tdpbssd` (signed bytes both sides,
/// exact int32 sums: `C[m][n] += Σₖ Σᵢ A[m][4k + i] · B[k][4n + i]`, with the shape checks whose
/// failure faults on the hardware) and `tilestored`, per Intel's definitions.
#[cfg(test)]
pub(crate) struct EmulatedTiles {
    /// Tile data, 16 rows of at most 64 bytes each.
    tiles: std::cell::RefCell<[[[u8; 64]; 16]; 8]>,
}

#[cfg(test)]
impl EmulatedTiles {
    /// The model (the token: the kernel's epilogue needs AVX-512 F).
    pub(crate) fn new(_: crate::cpu::Avx512) -> EmulatedTiles {
        EmulatedTiles {
            tiles: std::cell::RefCell::new([[[0; 64]; 16]; 8]),
        }
    }

    /// Tile `t`'s (rows, bytes per row) in [`CONFIG`].
    fn shape(t: usize) -> (usize, usize) {
        match t {
            0..=3 => (16, 64), // C: 16 rows × 16 int32
            4 => (16, 32),     // A: 16 weight rows × 32 int8
            5 | 6 => (8, 64),  // B: 8 rows of 16 tokens × 4 int8
            _ => panic!("tile {t} is not configured"),
        }
    }

    fn zero(&self, t: usize) {
        self.tiles.borrow_mut()[t] = [[0; 64]; 16];
    }

    /// # Safety
    /// `p` points at the tile's rows, `stride` bytes apart.
    unsafe fn load(&self, t: usize, p: *const u8, stride: usize) {
        let (rows, colsb) = Self::shape(t);
        let mut tiles = self.tiles.borrow_mut();
        tiles[t] = [[0; 64]; 16];
        for r in 0..rows {
            // SAFETY: the caller's promise.
            let src = unsafe { std::slice::from_raw_parts(p.add(r * stride), colsb) };
            tiles[t][r][..colsb].copy_from_slice(src);
        }
    }

    fn dpbssd(&self, c: usize, a: usize, b: usize) {
        let ((cm, cb), (am, ab), (bk, bb)) = (Self::shape(c), Self::shape(a), Self::shape(b));
        assert!(
            cm == am && cb == bb && ab == 4 * bk && cb % 4 == 0,
            "tdpbssd shapes"
        );
        let mut tiles = self.tiles.borrow_mut();
        let (ta, tb) = (tiles[a], tiles[b]);
        for m in 0..cm {
            for n in 0..cb / 4 {
                let mut s = i32::from_le_bytes(tiles[c][m][4 * n..4 * n + 4].try_into().unwrap());
                for k in 0..bk {
                    for i in 0..4 {
                        let x = ta[m][4 * k + i] as i8 as i32 * tb[k][4 * n + i] as i8 as i32;
                        s = s.wrapping_add(x);
                    }
                }
                tiles[c][m][4 * n..4 * n + 4].copy_from_slice(&s.to_le_bytes());
            }
        }
    }
}

// SAFETY: made only with the AVX-512 token; each method models the instructions it names.
#[cfg(test)]
unsafe impl TileUnit for EmulatedTiles {
    unsafe fn product1(&self, c: usize, w: *const u8, x: *const u8) {
        assert!(c == 0 || c == 2, "C tile {c} of a product");
        self.zero(c);
        // SAFETY: the caller's promise.
        unsafe {
            self.load(4, w, 32);
            self.load(5, x, 64);
        }
        self.dpbssd(c, 4, 5);
    }
    unsafe fn product2(&self, c: usize, w: *const u8, x: [*const u8; 2]) {
        assert!(c == 0 || c == 2, "C tile {c} of a product");
        self.zero(c);
        self.zero(c + 1);
        // SAFETY: the caller's promise.
        unsafe {
            self.load(4, w, 32);
            self.load(5, x[0], 64);
            self.load(6, x[1], 64);
        }
        self.dpbssd(c, 4, 5);
        self.dpbssd(c + 1, 4, 6);
    }
    unsafe fn store(&self, c: usize, p: *mut i32) {
        assert!(c < 4, "C tile {c}");
        let (rows, colsb) = Self::shape(c);
        let tiles = self.tiles.borrow();
        for r in 0..rows {
            // SAFETY: the caller's promise (16 rows of 64 bytes).
            let dst = unsafe { std::slice::from_raw_parts_mut((p as *mut u8).add(r * 64), colsb) };
            dst.copy_from_slice(&tiles[c][r][..colsb]);
        }
    }
}

/// Block `$b`'s sums out of the C tiles of its parity (through the `$sums` buffers) and into
/// the accumulators `$av` (a macro, not a function: the accumulators stay in registers).
macro_rules! finish {
    ($unit:expr, $g:expr, $av:expr, $sums:expr, $wd:expr, $ad:expr, $wm:expr, $am:expr, $b:expr) => {{
        let c = 2 * ($b & 1);
        $unit.store(c, $sums[0]);
        if $g == 2 {
            $unit.store(c + 1, $sums[1]);
        }
        for g in 0..$g {
            epilogue::<HALF, MIN>(&mut $av[g], $sums[g], $wd, $ad[g], $wm, $am[g], $b);
        }
    }};
}

/// # Safety
/// This thread's tile configuration is [`CONFIG`]; AVX-512 F available; `G` is 1 or 2; `w`
/// holds `nb` tiles of 512 bytes and `wd` `nb × 16` scales, each `a[g]` and `ad[g]` as many
/// tiles and `× 16` scales (half as many with `HALF`, `nb` even); with `MIN`, `wm` and each
/// `am[g]` hold `nb × 16` values; `nb > 0`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn tile_q8_amx<U: TileUnit, const G: usize, const HALF: bool, const MIN: bool>(
    unit: &U,
    w: *const u8,
    wd: *const f32,
    a: [*const u8; G],
    ad: [*const f32; G],
    wm: *const f32,
    am: [*const f32; G],
    nb: usize,
    acc: [&mut [[f32; TILE_TOKENS]; TILE_ROWS]; G],
) {
    let mut sums = Sums([[0; TILE_ROWS * TILE_TOKENS]; 2]);
    let sp = [sums.0[0].as_mut_ptr(), sums.0[1].as_mut_ptr()];
    let mut av = [[_mm512_setzero_ps(); TILE_ROWS]; G];
    for (avg, accg) in av.iter_mut().zip(acc.iter()) {
        for (v, row) in avg.iter_mut().zip(accg.iter()) {
            // SAFETY: each row of acc holds 16 values.
            *v = unsafe { _mm512_loadu_ps(row.as_ptr()) };
        }
    }
    // SAFETY: blocks 0..nb are in bounds, as the caller promises; block b − 1's products were
    // issued before its sums are stored; each `sums` buffer holds a C tile.
    unsafe {
        product::<U, G, HALF>(unit, w, a, nb, 0);
        for b in 1..nb {
            product::<U, G, HALF>(unit, w, a, nb, b);
            finish!(unit, G, av, sp, wd, ad, wm, am, b - 1);
        }
        finish!(unit, G, av, sp, wd, ad, wm, am, nb - 1);
    }
    for (avg, accg) in av.iter().zip(acc) {
        for (v, row) in avg.iter().zip(accg.iter_mut()) {
            // SAFETY: each row of acc holds 16 values.
            unsafe { _mm512_storeu_ps(row.as_mut_ptr(), *v) };
        }
    }
}
/// Block `b`'s products into the C tiles of its parity.
///
/// # Safety
/// As [`tile_q8_amx`], and `b < nb`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn product<U: TileUnit, const G: usize, const HALF: bool>(
    unit: &U,
    w: *const u8,
    a: [*const u8; G],
    nb: usize,
    b: usize,
) {
    // SAFETY: tile b < nb of `w` and tile b (b / 2 with HALF) of each `a[g]` are in bounds; the
    // configuration is loaded; `G` is 1 or 2.
    unsafe {
        let wb = w.add(b * TILE_BYTES);
        if b + PREFETCH_BLOCKS < nb {
            // The weight tiles come from L2 (the activation tiles of a pass stay in L1).
            let ahead = wb.add(PREFETCH_BLOCKS * TILE_BYTES);
            for line in 0..TILE_BYTES / 64 {
                _mm_prefetch::<_MM_HINT_T0>(ahead.add(line * 64) as *const i8);
            }
        }
        let ab = if HALF { b / 2 } else { b };
        let (x0, c) = (a[0].add(ab * TILE_BYTES), 2 * (b & 1));
        match G {
            1 => unit.product1(c, wb, x0),
            _ => unit.product2(c, wb, [x0, a[G - 1].add(ab * TILE_BYTES)]),
        }
    }
}

/// Tile `b`'s sums (16 rows × 16 tokens at `sums`) into the accumulators: one conversion, one
/// multiply (the 16 tokens' scales by the row's scale) and one fused multiply-add per row, then
/// with `MIN` one more (the row's min by the tokens' sums).
///
/// # Safety
/// AVX-512 F available; `sums` holds 256 int32 (64-byte aligned); `wd` holds tile `b`'s 16
/// scales and `ad` those of its activation block (`b / 2` with `HALF`); with `MIN`, `wm` and
/// `am` tile `b`'s 16 values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn epilogue<const HALF: bool, const MIN: bool>(
    av: &mut [__m512; TILE_ROWS],
    sums: *const i32,
    wd: *const f32,
    ad: *const f32,
    wm: *const f32,
    am: *const f32,
    b: usize,
) {
    // SAFETY: as the caller promises.
    unsafe {
        let ab = if HALF { b / 2 } else { b };
        let dav = _mm512_loadu_ps(ad.add(ab * TILE_TOKENS));
        let amv = if MIN {
            _mm512_loadu_ps(am.add(b * TILE_TOKENS))
        } else {
            _mm512_setzero_ps()
        };
        for (r, v) in av.iter_mut().enumerate() {
            let s = _mm512_cvtepi32_ps(_mm512_load_si512(sums.add(r * TILE_TOKENS) as *const _));
            let scale = _mm512_mul_ps(dav, _mm512_set1_ps(*wd.add(b * TILE_ROWS + r)));
            *v = _mm512_fmadd_ps(s, scale, *v);
            if MIN {
                *v = _mm512_fnmadd_ps(_mm512_set1_ps(*wm.add(b * TILE_ROWS + r)), amv, *v);
            }
        }
    }
}
