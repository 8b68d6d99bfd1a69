//! The only `unsafe` of this crate: mapping a file read-only.
#![allow(unsafe_code)]

use std::path::Path;

/// Maps `file` read-only.
///
/// # Safety (of the inner call)
/// The map is undefined behaviour to read if another process truncates or rewrites the file while
/// it is mapped; model files are treated as immutable while loaded, the same contract every
/// memory-mapping inference engine makes.
pub(crate) fn map(path: &Path, file: &std::fs::File) -> crate::Result<memmap2::Mmap> {
    unsafe { memmap2::Mmap::map(file) }.map_err(|e| crate::FormatError::io(path, e))
}
