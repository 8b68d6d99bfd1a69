use kernels::{dequantize, quantize_into, WeightType};

/// A flat batch of tokens to run through the model. Entry `i` is token `tokens[i]` at position
/// `positions[i]` of sequence `seq_ids[i]`. Within one sequence, positions must be increasing and
/// every earlier position must already be in the KV storage or earlier in this batch.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub tokens: &'a [u32],
    pub positions: &'a [usize],
    pub seq_ids: &'a [usize],
    /// Indices into the batch whose logits are returned, in this order.
    pub logits_for: &'a [usize],
}

/// How cached keys and values are stored: one row of `n_kv_heads * head_dim` values per
/// (layer, sequence, position), encoded in this type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KvType {
    F32,
    /// IEEE half precision: half the memory of `F32`, and the rounding is far below what the
    /// model's own arithmetic resolves (llama.cpp's default too).
    #[default]
    F16,
    /// 8-bit blocks of 32 with one f16 scale (GGUF's Q8_0); needs `head_dim` a multiple of 32.
    Q8_0,
}

impl KvType {
    pub const ALL: [KvType; 3] = [KvType::F32, KvType::F16, KvType::Q8_0];

    /// The lowercase name used on command lines.
    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }

    /// Parses a [`KvType::name`] (case-insensitive).
    pub fn from_name(name: &str) -> Option<KvType> {
        KvType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name.trim()))
    }

    fn weight_type(self) -> WeightType {
        match self {
            KvType::F32 => WeightType::F32,
            KvType::F16 => WeightType::F16,
            KvType::Q8_0 => WeightType::Q8_0,
        }
    }

    /// Whether rows of `head_dim`-sized heads can be stored in this type (each head must be a
    /// whole number of blocks, so that a head can be read on its own).
    pub fn fits_head_dim(self, head_dim: usize) -> bool {
        head_dim.is_multiple_of(self.weight_type().block_elems())
    }

    /// Bytes of one stored row of `n` values.
    pub fn row_bytes(self, n: usize) -> usize {
        self.weight_type().row_bytes(n)
    }

    /// Encodes `src` into `dst` (`row_bytes(src.len())` bytes).
    pub fn encode(self, src: &[f32], dst: &mut [u8]) {
        quantize_into(self.weight_type(), src, dst)
    }

    /// Decodes `dst.len()` values from `src`.
    pub fn decode(self, src: &[u8], dst: &mut [f32]) {
        dequantize(self.weight_type(), src, dst)
    }

    /// Decodes `n_rows` rows of `width` values (row `r` at `src[r · stride..]`) into
    /// `out[r · width..]`, `width = out.len() / n_rows`. f16 goes sixteen values at a time
    /// (`kernels::f16_rows`); the other types row by row.
    pub fn decode_rows(self, src: &[u8], stride: usize, n_rows: usize, out: &mut [f32]) {
        if n_rows == 0 {
            return;
        }
        let width = out.len() / n_rows;
        if self == KvType::F16 {
            return kernels::f16_rows(src, stride, n_rows, width, out);
        }
        let row_bytes = self.row_bytes(width);
        for (r, o) in out.chunks_exact_mut(width).enumerate() {
            self.decode(&src[r * stride..r * stride + row_bytes], o);
        }
    }

    /// Decodes `n_rows` rows of `width` values (row `r` at `src[r · stride..]`) transposed:
    /// value `d` of row `r` into `out[d · out_stride + r]`. f16 goes 16 rows at a time
    /// (`kernels::f16_rows_transposed`), and a count short of a multiple of 16 is rounded up
    /// where `src` holds the rows and `out_stride` leaves room (a part-filled block of keys:
    /// the outputs of those rows are scratch the caller never reads, and the 16-row path is
    /// faster than value-by-value for the rest); the other types row by row through `row`, a
    /// scratch row of `width` values.
    pub fn decode_transposed(
        self,
        src: &[u8],
        stride: usize,
        n_rows: usize,
        out: &mut [f32],
        out_stride: usize,
        row: &mut [f32],
    ) {
        let width = row.len();
        if self == KvType::F16 {
            let whole = n_rows.next_multiple_of(16);
            // The rounded-up rows must stay in `src` and in their own columns of `out`.
            let held = whole <= out_stride
                && (width - 1) * out_stride + whole <= out.len()
                && src.len() >= (whole - 1) * stride + 2 * width;
            let n = if n_rows > 0 && held { whole } else { n_rows };
            return kernels::f16_rows_transposed(src, stride, n, width, out, out_stride);
        }
        let row_bytes = self.row_bytes(width);
        for r in 0..n_rows {
            self.decode(&src[r * stride..r * stride + row_bytes], row);
            for (d, &v) in row.iter().enumerate() {
                out[d * out_stride + r] = v;
            }
        }
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Keys and values of one block of positions of one (layer, sequence): `block_size` rows each,
/// position-major, every row `kv_type.row_bytes(n_kv_heads * head_dim)` bytes. Rows past the
/// sequence's length hold whatever was there; the model may decode them with the rest of the
/// block but uses only positions it stored.
#[derive(Debug, Clone, Copy)]
pub struct KvBlock<'a> {
    pub keys: &'a [u8],
    pub values: &'a [u8],
}

/// The model's window onto KV storage owned by the caller, in blocks of `block_size`
/// positions: position `p` of a sequence lives in its block `p / block_size`, row
/// `p % block_size`. The caller makes room (allocates blocks) before calling the model.
pub trait KvView: Sync {
    /// How rows are encoded.
    fn kv_type(&self) -> KvType;
    /// Positions per block.
    fn block_size(&self) -> usize;
    /// Stores the key and value of `seq` at `pos` in `layer` (encoding them).
    fn store(&mut self, layer: usize, seq: usize, pos: usize, key: &[f32], value: &[f32]);
    /// Block `index` of `seq` in `layer`, holding positions stored earlier.
    fn block(&self, layer: usize, seq: usize, index: usize) -> KvBlock<'_>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys of a part-filled block come out the same whether the block holds the rows past
    /// them (f16 decodes those too, as scratch) or ends right after them.
    #[test]
    fn part_filled_key_blocks_decode_the_stored_rows() {
        let (width, rows) = (32, 16);
        for ty in KvType::ALL {
            let rb = ty.row_bytes(width);
            // Rows farther apart than their bytes, as the heads of a KV row are.
            let stride = rb + 6;
            let mut src = vec![0u8; rows * stride];
            for r in 0..rows {
                let row: Vec<f32> = (0..width)
                    .map(|d| (r * width + d) as f32 * 0.25 - 40.0)
                    .collect();
                ty.encode(&row, &mut src[r * stride..r * stride + rb]);
            }
            for n in [1, 5, 15, 16] {
                let short = &src[..(n - 1) * stride + rb];
                for block in [&src[..], short] {
                    let mut out = vec![f32::NAN; width * rows];
                    let mut row = vec![0f32; width];
                    ty.decode_transposed(block, stride, n, &mut out, rows, &mut row);
                    let mut want = vec![0f32; width];
                    for r in 0..n {
                        ty.decode(&block[r * stride..r * stride + rb], &mut want);
                        for d in 0..width {
                            assert_eq!(out[d * rows + r].to_bits(), want[d].to_bits(), "{ty} {n}");
                        }
                    }
                }
            }
        }
    }
}
