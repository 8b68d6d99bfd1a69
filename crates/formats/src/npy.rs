//! NumPy `.npy` files of little-endian `f32`, C order: what `herd logits` writes and what the
//! reference logits of the conformance tests are stored as.

use std::path::Path;

use crate::{FormatError, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Writes `data` with `shape` as a version 1.0 `.npy` file.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    debug_assert_eq!(shape.iter().product::<usize>(), data.len());
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, out).map_err(|e| FormatError::io(path, e))
}

/// Reads a `.npy` file of little-endian `f32` in C order: (shape, values).
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
    let corrupt = |msg: &str| FormatError::corrupt(path, "npy header", msg);
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(corrupt("not a .npy file (bad magic)"));
    }
    let (hlen, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(FormatError::unsupported(path, format!(".npy version {v}"))),
    };
    let header = bytes
        .get(start..start.saturating_add(hlen))
        .ok_or_else(|| corrupt("header runs past the end of the file"))?;
    let header = std::str::from_utf8(header).map_err(|_| corrupt("header is not text"))?;
    if !header.contains("'descr': '<f4'") {
        return Err(FormatError::unsupported(
            path,
            format!("dtype in {header:?} (only '<f4')"),
        ));
    }
    if header.contains("'fortran_order': True") {
        return Err(FormatError::unsupported(path, "Fortran order"));
    }
    let shape_txt = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split('(').nth(1))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| corrupt("no shape"))?;
    let shape = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| corrupt("shape is not a list of integers"))
        })
        .collect::<Result<Vec<_>>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| corrupt("shape overflows"))?;
    let data = &bytes[start + hlen..];
    if n.checked_mul(4) != Some(data.len()) {
        return Err(corrupt(&format!(
            "shape {shape:?} needs {n} values, file holds {} bytes",
            data.len()
        )));
    }
    let values = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((shape, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let path = std::env::temp_dir().join(format!("herd-npy-{}.npy", std::process::id()));
        let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        write_f32(&path, &[3, 4], &data).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            (10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize) % 64,
            0
        );
        let (shape, back) = read_f32(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(shape, vec![3, 4]);
        assert_eq!(back, data);
    }
}
