//! Every f16 value as `f32`, in a table indexed by the bits (256 KiB, built once): the decode
//! kernels look block scales up here, one scalar load instead of a vector conversion (as
//! llama.cpp does); the scales of one model span few exponents, so the used lines stay cached.

use std::sync::OnceLock;

use half::f16;

/// The table, built on first use.
pub(crate) fn f16_table() -> &'static [f32; 1 << 16] {
    static TABLE: OnceLock<Box<[f32; 1 << 16]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Box::new([0f32; 1 << 16]);
        for (bits, v) in t.iter_mut().enumerate() {
            *v = f16::from_bits(bits as u16).to_f32();
        }
        t
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_conversion() {
        let t = super::f16_table();
        for bits in [0u16, 1, 0x3c00, 0x8001, 0x7bff, 0xfbff, 0x0400, 0x03ff] {
            assert_eq!(
                t[bits as usize].to_bits(),
                half::f16::from_bits(bits).to_f32().to_bits()
            );
        }
    }
}
