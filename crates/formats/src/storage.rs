use std::ops::Range;
use std::sync::Arc;

/// Bytes of a tensor: a range of a shared read-only memory map, or an owned buffer (formats whose
/// bytes need conversion or joining).
#[derive(Clone)]
pub enum Storage {
    Mapped {
        map: Arc<memmap2::Mmap>,
        range: Range<usize>,
    },
    Owned(Arc<Vec<u8>>),
    /// Bytes made in memory of their own ([`Storage::anon_filled`]), read-only once filled.
    Anon(Arc<memmap2::Mmap>),
}

impl Storage {
    pub fn owned(bytes: Vec<u8>) -> Self {
        Storage::Owned(Arc::new(bytes))
    }
    /// A sub-range of a map. The caller has checked `range` against `map.len()`.
    pub fn mapped(map: Arc<memmap2::Mmap>, range: Range<usize>) -> Self {
        assert!(
            range.start <= range.end && range.end <= map.len(),
            "range checked by reader"
        );
        Storage::Mapped { map, range }
    }
    /// `len` bytes written by `fill` into fresh anonymous memory, with the kernel asked for
    /// huge pages (a large copy then takes a few hundred page faults instead of one per 4 KiB,
    /// and reading it back misses the TLB less); read-only afterwards.
    pub fn anon_filled(len: usize, fill: impl FnOnce(&mut [u8])) -> std::io::Result<Self> {
        if len == 0 {
            return Ok(Storage::owned(Vec::new()));
        }
        // The map itself would succeed (the kernel promises pages it may not have); filling
        // it would then end the process. Refuse instead, so the caller keeps what it has, and
        // leave room for the rest of the work (KV cache, activations).
        if let Some(avail) = available_memory() {
            if len as u64 + ANON_RESERVE > avail {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::OutOfMemory,
                    format!("{len} bytes asked for, {avail} available, {ANON_RESERVE} kept free"),
                ));
            }
        }
        let mut m = memmap2::MmapMut::map_anon(len)?;
        // A hint: without transparent huge pages the map works the same with small pages.
        let _ = m.advise(memmap2::Advice::HugePage);
        fill(&mut m);
        Ok(Storage::Anon(Arc::new(m.make_read_only()?)))
    }
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped { map, range } => &map[range.clone()],
            Storage::Owned(v) => v,
            Storage::Anon(m) => m,
        }
    }
    /// Hands the pages of a mapped range back to the kernel once their bytes have been copied
    /// elsewhere (a repacked weight): they leave the resident set and come back from the file
    /// only if read again. Bytes in memory of their own are left alone.
    pub fn release(&self) {
        if let Storage::Mapped { map, range } = self {
            crate::mmap::release(map, range.clone());
        }
    }
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn is_mapped(&self) -> bool {
        matches!(self, Storage::Mapped { .. })
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Storage::Mapped { range, .. } => write!(f, "Mapped({range:?})"),
            Storage::Owned(v) => write!(f, "Owned({} bytes)", v.len()),
            Storage::Anon(m) => write!(f, "Anon({} bytes)", m.len()),
        }
    }
}

/// Memory-maps a whole file read-only.
pub fn map_file(path: &std::path::Path) -> crate::Result<Arc<memmap2::Mmap>> {
    let file = std::fs::File::open(path).map_err(|e| crate::FormatError::io(path, e))?;
    map_open_file(path, &file)
}

pub(crate) fn map_open_file(
    path: &std::path::Path,
    file: &std::fs::File,
) -> crate::Result<Arc<memmap2::Mmap>> {
    // Mapping is the one unsafe corner of this crate; it lives in `mmap.rs`.
    crate::mmap::map(path, file).map(Arc::new)
}

/// Memory [`Storage::anon_filled`] leaves available: it refuses a copy that would leave less.
pub const ANON_RESERVE: u64 = 1 << 30;

/// Memory the system can still give without swapping (Linux: `MemAvailable` of
/// `/proc/meminfo`, which counts page cache that can be dropped); `None` where unknown.
pub fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_memory_beyond_what_is_available_is_refused_unfilled() {
        let Some(avail) = available_memory() else {
            println!("skip: this system does not say how much memory is available");
            return;
        };
        assert!(avail > 0);
        let mut filled = false;
        let err = Storage::anon_filled(avail as usize, |_| filled = true).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::OutOfMemory);
        assert!(!filled);
        if avail > ANON_RESERVE + (1 << 20) {
            let s = Storage::anon_filled(4096, |b| b.fill(7)).unwrap();
            assert!(s.as_bytes().iter().all(|&b| b == 7));
        }
    }
}
