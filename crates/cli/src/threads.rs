//! The size of the thread pool the kernels run on.

use anyhow::{bail, Result};

/// Number of physical cores (distinct (package, core) pairs in /proc/cpuinfo), falling back to
/// the logical CPU count where that is not available.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return logical;
    };
    let mut cores = std::collections::BTreeSet::new();
    let mut package = None;
    for line in info.lines() {
        let mut kv = line.splitn(2, ':').map(str::trim);
        match (kv.next(), kv.next()) {
            (Some("physical id"), Some(v)) => package = Some(v.to_string()),
            (Some("core id"), Some(v)) => {
                cores.insert((package.clone(), v.to_string()));
            }
            _ => {}
        }
    }
    if cores.is_empty() {
        logical
    } else {
        cores.len().min(logical)
    }
}

/// Sizes the global pool: the largest of `threads` when given, else one thread per physical
/// core. (A command that runs several counts, like `bench`, installs smaller pools inside.)
pub fn init(threads: &[usize]) -> Result<()> {
    if threads.contains(&0) {
        bail!("--threads must be at least 1");
    }
    let n = threads.iter().copied().max().unwrap_or_else(physical_cores);
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| anyhow::anyhow!("cannot start {n} threads: {e}"))
}
