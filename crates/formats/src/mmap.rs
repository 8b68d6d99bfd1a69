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

/// Drops the whole pages inside `range` of `map` from this process's resident set
/// (`MADV_DONTNEED`): a hint, its failure ignored. The bytes stay readable: the next read faults
/// the page back in from the file.
///
/// # Safety (of the inner call)
/// `MADV_DONTNEED` discards private modifications of a mapping; this map is read-only and has
/// none, so no byte anyone holds a reference to changes (under the immutable-file contract of
/// [`map`]).
pub(crate) fn release(map: &memmap2::Mmap, range: std::ops::Range<usize>) {
    const PAGE: usize = 4096;
    let (start, end) = (range.start.next_multiple_of(PAGE), range.end / PAGE * PAGE);
    if start < end {
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
        };
    }
}
