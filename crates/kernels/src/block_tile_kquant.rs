//! K-quant weights (Q2_K..Q6_K, and their repacked `Q2_Kx16` ... `Q6_Kx16`) as the block tiles
//! of `block_tiles.rs`, for the VNNI kernels of AVX-512 and AVX2 (`avx512_blocks.rs`,
//! `avx2_blocks.rs`).
//!
//! A K-quant value decodes to `d · sc_j · (u − k) − dmin · mn_j` (`kquants/unpack.rs`), with
//! one scale and min per block `j` of 32 values (Q4_K, Q5_K) or 16 (Q2_K, Q3_K, Q6_K). Against
//! activations quantized to Q8_0 blocks of 32 (`d_a`, `a`), block `j` contributes
//! `(d · sc_j) · d_a · Σ u · a − (dmin · mn_j + k · d · sc_j) · (d_a · Σ a)`: the first sum is
//! exact in int32 (`vpdpbusd` multiplies the unsigned `u` by signed bytes), the second a
//! per-token sum made once with the activations ([`crate::block_tiles::ActSums`]), the offset `k` moved
//! into the min. So per group of 16 rows each block becomes one 512-byte weight tile, 16 scales
//! `d · sc_j` and 16 mins. A block of 16 values takes a whole tile: its values in its own half
//! of the 32 positions of the activation block it meets, zeros in the other half
//! ([`crate::block_tiles::TileForm::half`]).
//!
//! The activations are Q8_0 blocks, finer than the Q8_K super-blocks of the row kernels, so the
//! tile and row paths of these types agree to rounding, not bitwise. Repacked rows (`Q2_Kx16`
//! ... `Q6_Kx16`) go into the tiles without unpacking ([`put_x16_block`]): their 64-byte runs
//! already hold four values of one block for all 16 rows.

use crate::block_tile_shape::{TILE_BYTES, TILE_ROWS};
use crate::block_tiles::TileForm;
use crate::cpu::Level;
use crate::kquants::unpack::offset;
use crate::kquants::{unpack_row, x16, Unpacked, QK_K};
use crate::{WeightType, WeightView};

/// Values of an activation block (and bytes of a weight tile row).
const QK: usize = 32;

/// Packs groups of 16 rows of one K-quant matrix into tiles, with buffers of its own.
pub(crate) struct Packer<'a> {
    level: Level,
    w: WeightView<'a>,
    /// The stored type the rows are unpacked as.
    ty: WeightType,
    form: TileForm,
    /// Super-blocks in the common form: a group's 16 stored rows, row after row.
    blocks: Vec<Unpacked>,
}

impl<'a> Packer<'a> {
    /// A packer of `w` into tiles of `form` (made for `w`'s type), or `None` when `w` is not a
    /// K-quant matrix.
    pub(crate) fn new(level: Level, w: &WeightView<'a>, form: TileForm) -> Option<Packer<'a>> {
        let ty = w.ty.stored();
        if !crate::kquants::is_kquant(ty) {
            return None;
        }
        // Repacked rows go into the tiles directly ([`put_x16_block`]): no buffers.
        let nb = if w.ty.is_grouped() {
            0
        } else {
            TILE_ROWS * (w.n_cols / QK_K)
        };
        Some(Packer {
            level,
            w: *w,
            ty,
            form,
            blocks: vec![Unpacked::ZERO; nb],
        })
    }

    /// Rows `r0..r0 + valid` (the rest of the 16 padding, zeros) into `q` (one 512-byte tile per
    /// block of the row, in order), `d` (16 scales per tile) and `m` (16 mins per tile).
    pub(crate) fn pack_group(
        &mut self,
        r0: usize,
        valid: usize,
        q: &mut [u8],
        d: &mut [f32],
        m: &mut [f32],
    ) {
        let per_super = QK_K / QK * self.form.per_block();
        let nsb = self.w.n_cols / QK_K;
        let nt = nsb * per_super;
        assert!(q.len() == nt * TILE_BYTES && d.len() == nt * TILE_ROWS);
        assert!(m.len() == d.len());
        if self.w.ty.is_grouped() {
            // Repacked rows hold the VNNI tiles' values four to a lane already.
            assert!(r0.is_multiple_of(x16::ROWS) && valid == x16::ROWS);
            let gbb = x16::group_block(self.w.ty);
            let group = &self.w.bytes[r0 / x16::ROWS * nsb * gbb..];
            for (sb, gb) in group.chunks_exact(gbb).take(nsb).enumerate() {
                let (t0, t1) = (sb * per_super, (sb + 1) * per_super);
                let q = &mut q[t0 * TILE_BYTES..t1 * TILE_BYTES];
                let (d, m) = (
                    &mut d[t0 * TILE_ROWS..t1 * TILE_ROWS],
                    &mut m[t0 * TILE_ROWS..t1 * TILE_ROWS],
                );
                put_x16_block(self.w.ty, gb, q, d, m);
            }
            return;
        }
        // Stored rows (repacked ones returned above): all 16 unpacked first (padding rows as
        // zeros), then each tile written in order, a 64-byte vector at a time.
        for (i, blocks) in self.blocks.chunks_exact_mut(nsb).enumerate() {
            if i < valid {
                unpack_row(self.level, self.ty, self.w.row(r0 + i), blocks);
            } else {
                blocks.fill(Unpacked::ZERO);
            }
        }
        put_rows_vnni(self.level, self.ty, self.form, &self.blocks, nsb, q, d, m);
    }
}

/// A group's 16 rows of unpacked super-blocks (`rows[i · nsb + b]`: row `i`, super-block `b`)
/// as VNNI-layout tiles: each 64-byte vector holds four values of every row, written in order
/// (the rows one at a time wrote four bytes every 64). Values `u` as they are; the scale
/// `d · sc` and the min `dmin · mn + k · d · sc` (the offset's correction) per 16 values; zero
/// rows (padding) give zero values, scales and mins.
#[allow(clippy::too_many_arguments)]
fn put_rows_vnni(
    level: Level,
    ty: WeightType,
    form: TileForm,
    rows: &[Unpacked],
    nsb: usize,
    q: &mut [u8],
    d: &mut [f32],
    m: &mut [f32],
) {
    let k = offset(ty);
    let per = if form.half { 16 } else { 8 };
    for b in 0..nsb {
        let us: [&Unpacked; TILE_ROWS] = std::array::from_fn(|i| &rows[i * nsb + b]);
        let tiles = &mut q[b * per * TILE_BYTES..][..per * TILE_BYTES];
        put_values_vnni(level, &us, form.half, tiles);
        let span = b * per * TILE_ROWS..(b + 1) * per * TILE_ROWS;
        put_scales_vnni(level, &us, k, form.half, &mut d[span.clone()], &mut m[span]);
    }
}

/// The scales `d · sc_s` and (when `m` is not empty) the mins `dmin · mn_s + k · d · sc_s` of
/// one super-block of 16 rows, a tile's 16 rows side by side: tile `j` takes those of the
/// values it holds (`s = j` with `half`, else `2j`). At AVX-512 the 16 rows' 16 values are made
/// a row per vector and transposed (the same operations, so the same bits).
fn put_scales_vnni(
    level: Level,
    us: &[&Unpacked; TILE_ROWS],
    k: i16,
    half: bool,
    d: &mut [f32],
    m: &mut [f32],
) {
    let per = if half { 16 } else { 8 };
    assert!(d.len() == per * TILE_ROWS && (m.is_empty() || m.len() == d.len()));
    #[cfg(target_arch = "x86_64")]
    if let Level::Avx512(_) = level {
        // SAFETY: the token proves the features; the lengths are checked above.
        return unsafe { put_scales_avx512(us, k, half, d, m) };
    }
    let _ = level;
    let scales: [[f32; 16]; TILE_ROWS] = us.map(|u| std::array::from_fn(|s| u.d * u.sc[s] as f32));
    for j in 0..per {
        let s = if half { j } else { 2 * j };
        for (i, u) in us.iter().enumerate() {
            d[j * TILE_ROWS + i] = scales[i][s];
            if !m.is_empty() {
                m[j * TILE_ROWS + i] = u.dmin * u.mn[s] as f32 + k as f32 * scales[i][s];
            }
        }
    }
}

/// # Safety
/// AVX-512 F available; `d` (and `m` unless empty) hold a super-block's tiles' 16 values each.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn put_scales_avx512(
    us: &[&Unpacked; TILE_ROWS],
    k: i16,
    half: bool,
    d: &mut [f32],
    m: &mut [f32],
) {
    use crate::kv_f16::avx512::transpose16;
    use std::arch::x86_64::*;
    let kf = _mm512_set1_ps(k as f32);
    let (mut sv, mut mv) = (
        [_mm512_setzero_ps(); TILE_ROWS],
        [_mm512_setzero_ps(); TILE_ROWS],
    );
    for (i, u) in us.iter().enumerate() {
        // SAFETY (loads): 16 bytes of `sc`, 32 of `mn`.
        unsafe {
            let sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(u.sc.as_ptr() as *const __m128i));
            sv[i] = _mm512_mul_ps(_mm512_set1_ps(u.d), _mm512_cvtepi32_ps(sc));
            let mn = _mm512_cvtepi16_epi32(_mm256_loadu_si256(u.mn.as_ptr() as *const __m256i));
            let dm = _mm512_mul_ps(_mm512_set1_ps(u.dmin), _mm512_cvtepi32_ps(mn));
            mv[i] = _mm512_add_ps(dm, _mm512_mul_ps(kf, sv[i]));
        }
    }
    // SAFETY: the features are this function's.
    let (sc, mn) = unsafe { (transpose16(sv), transpose16(mv)) };
    let per = if half { 16 } else { 8 };
    for j in 0..per {
        let s = if half { j } else { 2 * j };
        // SAFETY: tile j's 16 values, inside `d` and `m` (the caller's).
        unsafe {
            _mm512_storeu_ps(d.as_mut_ptr().add(j * TILE_ROWS), sc[s]);
            if !m.is_empty() {
                _mm512_storeu_ps(m.as_mut_ptr().add(j * TILE_ROWS), mn[s]);
            }
        }
    }
}

/// The values of one super-block of 16 rows as their VNNI-layout tiles (`tiles`: 8 of 32
/// values, or with `half` 16 of 16 values, each in its half of the tile and zeros in the
/// other): vector `c` of the tile holding value `4w` of a row holds word `w` (values
/// `4w..4w + 4`) of every row. With SIMD, 16 (AVX2: 8) words of 16 (8) rows are transposed in
/// registers at a time; the scalar loop copies a word at a time (a one-token prefill of a Q3_K
/// matrix spent most of its time here).
fn put_values_vnni(level: Level, us: &[&Unpacked; TILE_ROWS], half: bool, tiles: &mut [u8]) {
    assert_eq!(tiles.len(), if half { 16 } else { 8 } * TILE_BYTES);
    // Tile and vector of word `w`.
    let place = |w: usize| {
        if half {
            (w / 4, (w / 4 % 2) * 4 + w % 4)
        } else {
            (w / 8, w % 8)
        }
    };
    if half {
        // The other half of each 16-value tile.
        for (j, tile) in tiles.chunks_exact_mut(TILE_BYTES).enumerate() {
            let other = (1 - j % 2) * 4;
            tile[other * 64..(other + 4) * 64].fill(0);
        }
    }
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the features; 16 rows of 256 values are read, and every
        // word written lands in `tiles` (its length checked above).
        Level::Avx512(_) => unsafe { put_values_avx512(us, place, tiles.as_mut_ptr()) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Level::Avx2(_) => unsafe { put_values_avx2(us, place, tiles.as_mut_ptr()) },
        _ => {
            for w in 0..QK_K / 4 {
                let (t, c) = place(w);
                let v = &mut tiles[t * TILE_BYTES + c * 64..][..64];
                for (dst, u) in v.chunks_exact_mut(4).zip(us) {
                    dst.copy_from_slice(&u.u[4 * w..4 * w + 4]);
                }
            }
        }
    }
}

/// # Safety
/// AVX-512 F available; `place(w)` inside the tiles at `q` for every word `w < 64`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn put_values_avx512(
    us: &[&Unpacked; TILE_ROWS],
    place: impl Fn(usize) -> (usize, usize),
    q: *mut u8,
) {
    use crate::kv_f16::avx512::transpose16;
    use std::arch::x86_64::*;
    for chunk in 0..QK_K / 64 {
        let mut block = [_mm512_setzero_ps(); TILE_ROWS];
        for (v, u) in block.iter_mut().zip(us) {
            // SAFETY: bytes 64·chunk.. + 64 of a 256-byte array.
            *v = unsafe { _mm512_loadu_ps(u.u.as_ptr().add(64 * chunk) as *const f32) };
        }
        // SAFETY: the features are this function's; shuffles move bits unchanged.
        let cols = unsafe { transpose16(block) };
        for (i, col) in cols.iter().enumerate() {
            let (t, c) = place(16 * chunk + i);
            // SAFETY: the caller's.
            unsafe { _mm512_storeu_ps(q.add(t * TILE_BYTES + c * 64) as *mut f32, *col) };
        }
    }
}

/// # Safety
/// AVX2 available; `place(w)` inside the tiles at `q` for every word `w < 64`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn put_values_avx2(
    us: &[&Unpacked; TILE_ROWS],
    place: impl Fn(usize) -> (usize, usize),
    q: *mut u8,
) {
    use crate::avx2_pack::transpose8x8;
    use std::arch::x86_64::*;
    for h in 0..2 {
        for chunk in 0..QK_K / 32 {
            let mut block = [_mm256_setzero_si256(); 8];
            for (i, v) in block.iter_mut().enumerate() {
                let u = us[8 * h + i].u.as_ptr();
                // SAFETY: bytes 32·chunk.. + 32 of a 256-byte array.
                *v = unsafe { _mm256_loadu_si256(u.add(32 * chunk) as *const __m256i) };
            }
            for (i, col) in transpose8x8(block).into_iter().enumerate() {
                let (t, c) = place(8 * chunk + i);
                let at = t * TILE_BYTES + c * 64 + 32 * h;
                // SAFETY: the caller's; rows 8h..8h + 8 are bytes 32h..32h + 32 of the vector.
                unsafe { _mm256_storeu_si256(q.add(at) as *mut __m256i, col) };
            }
        }
    }
}

/// One super-block of a group of repacked rows (`gb`, 16 rows of `Q2_Kx16` ... `Q6_Kx16`) as
/// VNNI-layout tiles, without unpacking: bitwise what [`put_rows_vnni`] makes of the stored rows. In
/// `Q4_Kx16` each 64-byte run holds four values of one sub-block for all 16 rows, low and high
/// nibbles, which are two vectors of the sub-block's tile (`Q5_Kx16`: with the fifth bits of
/// the sub-block's bit run); in `Q6_Kx16` the three runs of each
/// 16 values make the four vectors of that block's half tile, in `Q2_Kx16` one run of low bits
/// (`Q3_Kx16`: with the high bits of the block's half of a mask run).
fn put_x16_block(ty: WeightType, gb: &[u8], q: &mut [u8], d: &mut [f32], m: &mut [f32]) {
    use crate::kquants::layout::{f16_at, scales_mins_k4};
    use crate::kquants::x16::{q4, q5, q6};
    match ty {
        WeightType::Q4_Kx16 | WeightType::Q5_Kx16 => {
            let five = ty == WeightType::Q5_Kx16;
            let qs = if five { q5::QS } else { q4::QS };
            let rows: [([u8; 8], [u8; 8]); TILE_ROWS] = std::array::from_fn(|l| {
                let mut packed = [0u8; 12];
                for w in 0..3 {
                    let at = q4::SCALES + 64 * w + 4 * l;
                    packed[4 * w..4 * w + 4].copy_from_slice(&gb[at..at + 4]);
                }
                scales_mins_k4(&packed)
            });
            let dl: [f32; TILE_ROWS] = std::array::from_fn(|l| f16_at(gb, q4::D + 2 * l));
            let ml: [f32; TILE_ROWS] = std::array::from_fn(|l| f16_at(gb, q4::DMIN + 2 * l));
            for j in 0..8 {
                let tile = &mut q[j * TILE_BYTES..(j + 1) * TILE_BYTES];
                let (lo, hi) = tile.split_at_mut(TILE_BYTES / 2);
                let src = &gb[qs + 256 * j..qs + 256 * (j + 1)];
                for ((l, h), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(src) {
                    (*l, *h) = (v & 0xf, v >> 4);
                }
                if five {
                    // Run q's bytes take bit q (low nibbles) and bit 4 + q (high) of the
                    // sub-block's fifth-bit run.
                    let bits = &gb[q5::QH + 64 * j..q5::QH + 64 * (j + 1)];
                    for q in 0..4 {
                        for (i, &b) in bits.iter().enumerate() {
                            lo[64 * q + i] |= (b >> q & 1) << 4;
                            hi[64 * q + i] |= (b >> (4 + q) & 1) << 4;
                        }
                    }
                }
                for (l, (sc, mn)) in rows.iter().enumerate() {
                    let scale = dl[l] * sc[j] as f32;
                    let own = ml[l] * mn[j] as f32;
                    d[j * TILE_ROWS + l] = scale;
                    m[j * TILE_ROWS + l] = own + 0.0 * scale;
                }
            }
        }
        WeightType::Q2_Kx16 | WeightType::Q3_Kx16 => {
            use crate::kquants::layout::scales_q3_k;
            use crate::kquants::x16::{q2, q3};
            let three = ty == WeightType::Q3_Kx16;
            // Per row: the scale and min of each block of 16 (Q3_K: 6-bit scale − 32, no
            // min; Q2_K: the scale byte's nibbles), and `dmin` (Q3_K: none, 0).
            let rows: [([i8; 16], [u8; 16]); TILE_ROWS] = std::array::from_fn(|l| {
                if three {
                    let mut packed = [0u8; 12];
                    for w in 0..3 {
                        let at = q3::SCALES + 64 * w + 4 * l;
                        packed[4 * w..4 * w + 4].copy_from_slice(&gb[at..at + 4]);
                    }
                    (scales_q3_k(&packed).map(|s| s - 32), [0; 16])
                } else {
                    let b: [u8; 16] =
                        std::array::from_fn(|g| gb[q2::SCALES + 64 * (g / 4) + 4 * l + g % 4]);
                    (b.map(|b| (b & 0xf) as i8), b.map(|b| b >> 4))
                }
            });
            let dl: [f32; TILE_ROWS] = std::array::from_fn(|l| f16_at(gb, q2::D + 2 * l));
            let ml: [f32; TILE_ROWS] = std::array::from_fn(|l| {
                if three {
                    0.0
                } else {
                    f16_at(gb, q2::DMIN + 2 * l)
                }
            });
            let (qs, k) = if three { (q3::QS, 4.0) } else { (q2::QS, 0.0) };
            for g in 0..16 {
                let tile = &mut q[g * TILE_BYTES..(g + 1) * TILE_BYTES];
                // The block's own half of the tile; zeros in the other.
                let own = 256 * (g % 2);
                tile.fill(0);
                let (low, hm) = (&gb[qs + 64 * g..][..64], &gb[q3::HM + 64 * (g / 2)..][..64]);
                // A vector of the tile at a time (loops the compiler makes SIMD).
                for s in 0..4 {
                    let out = &mut tile[own + 64 * s..][..64];
                    let hs = 4 * (g % 2) + s;
                    for ((o, &x), &h) in out.iter_mut().zip(low).zip(hm) {
                        let high = if three { (h >> hs & 1) << 2 } else { 0 };
                        *o = (x >> (2 * s) & 3) | high;
                    }
                }
                for (l, (sc, mn)) in rows.iter().enumerate() {
                    let scale = dl[l] * sc[g] as f32;
                    d[g * TILE_ROWS + l] = scale;
                    m[g * TILE_ROWS + l] = ml[l] * mn[g] as f32 + k * scale;
                }
            }
        }
        _ => {
            let dl: [f32; TILE_ROWS] = std::array::from_fn(|l| f16_at(gb, q6::D + 2 * l));
            for g in 0..16 {
                let tile = &mut q[g * TILE_BYTES..(g + 1) * TILE_BYTES];
                // The block's own half of the tile; zeros in the other.
                let own = 256 * (g % 2);
                tile.fill(0);
                let at = q6::QS + 192 * g;
                let (n0, n1, h) = (
                    &gb[at..at + 64],
                    &gb[at + 64..at + 128],
                    &gb[at + 128..at + 192],
                );
                for i in 0..64 {
                    let u = [
                        n0[i] & 0xf | (h[i] << 4) & 0x30,
                        n0[i] >> 4 | (h[i] << 2) & 0x30,
                        n1[i] & 0xf | h[i] & 0x30,
                        n1[i] >> 4 | (h[i] >> 2) & 0x30,
                    ];
                    for (s, u) in u.into_iter().enumerate() {
                        tile[own + 64 * s + i] = u;
                    }
                }
                for l in 0..TILE_ROWS {
                    let sc = gb[q6::SCALES + 16 * g + l] as i8;
                    let scale = dl[l] * sc as f32;
                    d[g * TILE_ROWS + l] = scale;
                    m[g * TILE_ROWS + l] = 0.0 * 0.0 + 32.0 * scale;
                }
            }
        }
    }
}
