use crate::Storage;

/// Element types a tensor can be stored in. Block-quantized types store `block_elems()` values in
/// `block_bytes()` bytes (ggml layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    /// ggml Q8_0: blocks of 32 values, an f16 scale then 32 i8.
    Q8_0,
    /// ggml Q4_0: blocks of 32 values, an f16 scale then 16 bytes of packed 4-bit values.
    Q4_0,
}

impl DType {
    /// Number of values in one storage block (1 for plain float types).
    pub fn block_elems(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q8_0 | DType::Q4_0 => 32,
        }
    }
    /// Bytes of one storage block.
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => 34,
            DType::Q4_0 => 18,
        }
    }
    /// Bytes needed for `n_elems` values, or `None` when `n_elems` is not a whole number of blocks
    /// or the product overflows.
    pub fn bytes_for(self, n_elems: usize) -> Option<usize> {
        if n_elems % self.block_elems() != 0 {
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
