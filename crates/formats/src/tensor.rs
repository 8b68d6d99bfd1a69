use crate::Storage;

/// Element types a tensor can be stored in. Block-quantized types store `block_elems()` values in
/// `block_bytes()` bytes (ggml layout).
// ggml's type names (Q4_K, not Q4K), as every tool and file header spells them.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    /// ggml Q8_0: blocks of 32 values, an f16 scale then 32 i8.
    Q8_0,
    /// ggml Q4_0: blocks of 32 values, an f16 scale then 16 bytes of packed 4-bit values.
    Q4_0,
    /// ggml Q2_K: super-blocks of 256 values in 84 bytes (16 sub-blocks with 4-bit scale and
    /// min, 2-bit values, f16 `d` and `dmin`).
    Q2_K,
    /// ggml Q3_K: super-blocks of 256 values in 110 bytes (high-bit mask, 2-bit values, 16
    /// 6-bit scales packed in 12 bytes, f16 `d`).
    Q3_K,
    /// ggml Q4_K: super-blocks of 256 values in 144 bytes (f16 `d` and `dmin`, 8 6-bit scales
    /// and mins packed in 12 bytes, 4-bit values).
    Q4_K,
    /// ggml Q5_K: super-blocks of 256 values in 176 bytes (as Q4_K plus a high-bit plane).
    Q5_K,
    /// ggml Q6_K: super-blocks of 256 values in 210 bytes (low 4 bits, high 2 bits, 16 i8
    /// scales, f16 `d`).
    Q6_K,
}

impl DType {
    /// Number of values in one storage block (1 for plain float types).
    pub fn block_elems(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q8_0 | DType::Q4_0 => 32,
            DType::Q2_K | DType::Q3_K | DType::Q4_K | DType::Q5_K | DType::Q6_K => 256,
        }
    }
    /// Bytes of one storage block.
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => 34,
            DType::Q4_0 => 18,
            DType::Q2_K => 84,
            DType::Q3_K => 110,
            DType::Q4_K => 144,
            DType::Q5_K => 176,
            DType::Q6_K => 210,
        }
    }
    /// Bytes needed for `n_elems` values, or `None` when `n_elems` is not a whole number of blocks
    /// or the product overflows.
    pub fn bytes_for(self, n_elems: usize) -> Option<usize> {
        if !n_elems.is_multiple_of(self.block_elems()) {
            return None;
        }
        (n_elems / self.block_elems()).checked_mul(self.block_bytes())
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::Q8_0 => "Q8_0",
            DType::Q4_0 => "Q4_0",
            DType::Q2_K => "Q2_K",
            DType::Q3_K => "Q3_K",
            DType::Q4_K => "Q4_K",
            DType::Q5_K => "Q5_K",
            DType::Q6_K => "Q6_K",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A named tensor: dtype, shape (outermost first) and its bytes, exactly
/// `dtype.bytes_for(shape.product())` of them (checked by the constructor).
#[derive(Debug, Clone)]
pub struct Tensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    data: Storage,
}

impl Tensor {
    /// Builds a tensor, checking that `data` holds exactly the bytes the shape and dtype need.
    pub fn new(
        name: impl Into<String>,
        dtype: DType,
        shape: Vec<usize>,
        data: Storage,
    ) -> Result<Self, String> {
        let name = name.into();
        let n = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("shape {shape:?} overflows"))?;
        let need = dtype
            .bytes_for(n)
            .ok_or_else(|| format!("{n} elements is not a whole number of {dtype} blocks"))?;
        if need != data.len() {
            return Err(format!(
                "shape {shape:?} of {dtype} needs {need} bytes, found {}",
                data.len()
            ));
        }
        Ok(Tensor {
            name,
            dtype,
            shape,
            data,
        })
    }
    pub fn n_elems(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn bytes(&self) -> &[u8] {
        self.data.as_bytes()
    }
    pub fn storage(&self) -> &Storage {
        &self.data
    }
}
