//! Spreading a matmul's weight rows over threads: contiguous chunks of rows, each task owning
//! the outputs of its rows for every token (columns of the `[n_tokens, n_rows]` result).

use std::marker::PhantomData;
use std::ops::Range;

use crate::cpu::Level;
use crate::WeightView;

/// How far ahead of the block being read the decode kernels prefetch the weights (a hint,
/// past the row's end into the rows that follow, which the same task reads next). On the
/// 2-core machines herd is measured on, 1 KiB left a third of the memory bandwidth unused;
/// 8–16 KiB ahead (several rows, many memory latencies' worth at full speed) reads fastest
/// for Q4_0, Q8_0 and K-quant decode alike (`herd bench -n 64`, alternating runs).
pub(crate) const PREFETCH_BYTES: usize = 16 << 10;

/// How far ahead the stored-row Q8_0 / Q4_0 kernels of the AVX-512 level prefetch: 64 KiB on
/// AMD's cores, where it read Q8_0 decode 12–25% faster than [`PREFETCH_BYTES`] (alternating
/// runs of `herd bench -n 64 -t 1` and of the `matvec` example), while the repacked kernels
/// there kept [`PREFETCH_BYTES`] (5–10% slower at 64 KiB); [`PREFETCH_BYTES`] elsewhere.
pub(crate) fn quant_rows_prefetch_bytes() -> usize {
    if crate::cpu::vendor_is_amd() {
        64 << 10
    } else {
        PREFETCH_BYTES
    }
}

/// Tasks per thread: a few, so a thread slowed by a neighbour on a shared machine does not hold
/// the others up for long.
const TASKS_PER_THREAD: usize = 4;

/// Tasks per thread of a prompt's product by the AVX2 tiles, quantized or float (more than
/// [`TASKS_PER_THREAD`]: the threads wait less for each other at the end of a section).
const PROMPT_TASKS_PER_THREAD: usize = 16;

/// The output `[n_tokens, n_rows]` restricted to the columns of one chunk of rows.
pub(crate) struct OutCols<'a> {
    ptr: *mut f32,
    n_rows: usize,
    n_tokens: usize,
    rows: Range<usize>,
    _out: PhantomData<&'a mut [f32]>,
}

// SAFETY: an `OutCols` only writes its own columns, which no other `OutCols` of the same buffer
// covers (see `for_each_row_chunk`), of a buffer mutably borrowed for its whole life.
unsafe impl Send for OutCols<'_> {}

impl OutCols<'_> {
    /// The weight rows (output columns) of this chunk.
    pub(crate) fn rows(&self) -> Range<usize> {
        self.rows.clone()
    }

    /// Token `t`'s outputs for this chunk's rows.
    pub(crate) fn token(&mut self, t: usize) -> &mut [f32] {
        assert!(t < self.n_tokens);
        // SAFETY: `t < n_tokens` and `rows ⊂ 0..n_rows` keep the slice inside the buffer; no
        // other `OutCols` covers these columns and `&mut self` keeps this one from aliasing it.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.ptr.add(t * self.n_rows + self.rows.start),
                self.rows.len(),
            )
        }
    }
}

impl OutCols<'_> {
    /// Tokens `ts`' outputs for the rows `cols` of this chunk (counted from its first row), one
    /// slice per token, all live at once (they never overlap).
    pub(crate) fn tokens_mut(
        &mut self,
        ts: Range<usize>,
        cols: Range<usize>,
    ) -> impl Iterator<Item = &mut [f32]> + '_ {
        assert!(ts.end <= self.n_tokens && cols.start <= cols.end && cols.end <= self.rows.len());
        let (ptr, n_rows, start) = (self.ptr, self.n_rows, self.rows.start + cols.start);
        ts.map(move |t| {
            // SAFETY: as in `token`; distinct tokens' slices are disjoint, and all of them
            // borrow `self` mutably for as long as they live.
            unsafe { std::slice::from_raw_parts_mut(ptr.add(t * n_rows + start), cols.len()) }
        })
    }
}

/// The output buffer's address, shared by the tasks (each writes only its own columns).
#[derive(Clone, Copy)]
struct BasePtr(*mut f32);
// SAFETY: only used to build `OutCols` of disjoint columns.
unsafe impl Send for BasePtr {}
// SAFETY: as above.
unsafe impl Sync for BasePtr {}

impl BasePtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Rows per task: about [`TASKS_PER_THREAD`] tasks per thread, at least `min_rows`, a multiple
/// of `align`.
pub(crate) fn chunk_rows(n_rows: usize, align: usize, min_rows: usize) -> usize {
    chunk_rows_per(n_rows, align, min_rows, TASKS_PER_THREAD)
}

/// Rows per task of a prompt's product by tiles at `level` (panels of `panel_rows`): at AVX2
/// about [`PROMPT_TASKS_PER_THREAD`] tasks per thread, never less than a panel (a panel streams
/// every token's activations once), not a quarter of a thread's share: a TinyLlama down
/// projection's quarter was some 10 ms of a 512-token prompt, which a thread that ran out
/// waited at the end of every section. Elsewhere [`chunk_rows`].
pub(crate) fn tile_chunk_rows(
    level: Level,
    n_rows: usize,
    align: usize,
    min_rows: usize,
    panel_rows: usize,
) -> usize {
    match level {
        #[cfg(target_arch = "x86_64")]
        Level::Avx2(_) => chunk_rows_per(
            n_rows,
            align,
            min_rows.max(panel_rows),
            PROMPT_TASKS_PER_THREAD,
        ),
        _ => chunk_rows(n_rows, align, min_rows),
    }
}

/// [`chunk_rows`] for about `per_thread` tasks per thread.
fn chunk_rows_per(n_rows: usize, align: usize, min_rows: usize, per_thread: usize) -> usize {
    let tasks = rayon::current_num_threads().max(1) * per_thread.max(1);
    let rows = n_rows.div_ceil(tasks).max(min_rows).max(1);
    rows.div_ceil(align) * align
}

/// Weight bytes (times tokens) one task of the row kernels streams, about: some 10 µs of one
/// core's memory bandwidth, so a parallel section ends at most about that long after its first
/// thread runs out of tasks. (Decode is a hundred sections or more per token; with four tasks
/// per thread, waiting took 6.5% of a TinyLlama Q4_0 decode's samples at two threads, 4.1% with
/// these.)
pub(crate) const ROWS_TASK_BYTES: usize = 128 << 10;

/// Rows per task of a product by the row kernels: about [`ROWS_TASK_BYTES`] of work, at least
/// [`crate::matmul::MIN_TASK_BYTES`], at most what gives every thread [`TASKS_PER_THREAD`]
/// tasks; then evened out over the tasks that makes (so a small matrix is not one task of the
/// least size and one of the rest: stories15M's 288-row products were 216 and 72 rows, one
/// thread doing three quarters); a multiple of 4 (the rows of the widest row kernels).
pub(crate) fn rows_task_rows(n_rows: usize, work_per_row: usize) -> usize {
    let work = work_per_row.max(1);
    let tasks = rayon::current_num_threads().max(1) * TASKS_PER_THREAD;
    let rows = ROWS_TASK_BYTES
        .div_ceil(work)
        .min(n_rows.div_ceil(tasks))
        .max(crate::matmul::MIN_TASK_BYTES.div_ceil(work))
        .max(1);
    let tasks = n_rows.div_ceil(rows.div_ceil(4) * 4).max(1);
    n_rows.div_ceil(tasks).max(1).div_ceil(4) * 4
}

/// Calls `f` on the output columns of consecutive chunks of `chunk_rows` rows covering
/// `0..n_rows` (`out` is `[n_tokens, n_rows]`), in parallel (`team.rs`) when there is more than
/// one chunk.
pub(crate) fn for_each_row_chunk<F>(
    out: &mut [f32],
    n_rows: usize,
    n_tokens: usize,
    chunk_rows: usize,
    f: F,
) where
    F: Fn(OutCols<'_>) + Sync,
{
    assert_eq!(out.len(), n_rows * n_tokens);
    assert!(chunk_rows > 0);
    let n_chunks = n_rows.div_ceil(chunk_rows);
    let base = BasePtr(out.as_mut_ptr());
    let cols = |c: usize| OutCols {
        ptr: base.get(),
        n_rows,
        n_tokens,
        rows: c * chunk_rows..((c + 1) * chunk_rows).min(n_rows),
        _out: PhantomData,
    };
    if n_chunks == 1 {
        f(cols(0));
    } else {
        crate::team::for_each_task(n_chunks, |c| f(cols(c)));
    }
}

/// A matrix product by rows with its activations prepared, to be run a chunk of rows at a time;
/// several of them (matrices that read the same input) can share one parallel section
/// ([`run_rows_jobs`]).
pub(crate) trait RowsJob: Sync {
    /// The weights (their rows are the output columns).
    fn weights(&self) -> &WeightView<'_>;
    /// Weight rows (output columns).
    fn n_rows(&self) -> usize {
        self.weights().n_rows
    }
    /// Rows per chunk ([`chunk_rows`]).
    fn chunk_rows(&self) -> usize;
    /// Computes every token's outputs for the rows of `oc`.
    fn run(&self, oc: OutCols<'_>);
}

/// Asks for the first [`PREFETCH_BYTES`] of the weights of `rows` (bytes
/// of whole rows, or of whole groups for the grouped types, whose chunks are whole groups).
/// The row kernels prefetch that far ahead of what they read, and each task starts a new
/// stream, so without this a task's first lines came on demand: at two threads TinyLlama
/// Q4_K_M decode went from 72–94% (mean 80%) to 86–91% (mean 89%) of the measured bandwidth
/// in six alternating runs each.
fn prefetch_task_start(w: &WeightView, rows: Range<usize>) {
    let rb = w.ty.row_bytes(w.n_cols);
    let start = (rows.start * rb).min(w.bytes.len());
    let end = (rows.end * rb)
        .min(start + PREFETCH_BYTES)
        .min(w.bytes.len());
    crate::stream::prefetch_range(&w.bytes[start..end]);
}

/// Bytes each thread reads ahead, at most, for the next product ([`read_ahead`]): a few tasks'
/// worth, well inside a core's L2 cache.
const READ_AHEAD_BYTES: usize = 256 << 10;

/// Declares the matrices the next product by rows will multiply by (in the order given to it),
/// so that the threads of the team prefetch the start of their share of them whenever they
/// are idle until then: at the end of the product before it, while another thread finishes,
/// and through the serial steps in between (norms, RoPE, the activations' quantization).
/// Thread `k` of `T` gets the bytes from `k / T` of the way through the matrices (where its
/// share of the tasks starts, about), up to [`READ_AHEAD_BYTES`]. An empty list clears the
/// declaration. A hint: it changes no result.
pub fn read_ahead(ws: &[WeightView]) {
    let threads = rayon::current_num_threads().max(1);
    let total: usize = ws.iter().map(|w| w.bytes.len()).sum();
    let mut ranges: Vec<&[u8]> = Vec::with_capacity(threads);
    for k in 0..threads {
        let mut at = k * total / threads;
        let mut range: &[u8] = &[];
        for w in ws {
            if at < w.bytes.len() {
                let end = (at + READ_AHEAD_BYTES).min(w.bytes.len());
                range = &w.bytes[at..end];
                break;
            }
            at -= w.bytes.len();
        }
        ranges.push(range);
    }
    crate::team::read_ahead(&ranges);
}

/// Runs every chunk of every job in one parallel section; `outs[j]` is job `j`'s output,
/// `[n_tokens, jobs[j].n_rows()]`.
pub(crate) fn run_rows_jobs(jobs: &[&dyn RowsJob], outs: &mut [&mut [f32]], n_tokens: usize) {
    assert_eq!(jobs.len(), outs.len());
    // (job, first task of the job) for every job, then the total.
    let mut first = Vec::with_capacity(jobs.len());
    let mut n_tasks = 0;
    for (j, out) in jobs.iter().zip(outs.iter()) {
        assert_eq!(out.len(), j.n_rows() * n_tokens);
        assert!(j.chunk_rows() > 0);
        first.push(n_tasks);
        n_tasks += j.n_rows().div_ceil(j.chunk_rows());
    }
    let bases: Vec<BasePtr> = outs.iter_mut().map(|o| BasePtr(o.as_mut_ptr())).collect();
    let task = |i: usize, follows: bool| {
        let j = first.partition_point(|&f| f <= i) - 1;
        let (job, c) = (jobs[j], i - first[j]);
        let (n_rows, chunk) = (job.n_rows(), job.chunk_rows());
        let rows = c * chunk..((c + 1) * chunk).min(n_rows);
        // A task right after the previous chunk of the same matrix on the same thread finds its
        // first rows prefetched already by the kernel that read that chunk.
        if !follows || c == 0 {
            prefetch_task_start(job.weights(), rows.clone());
        }
        job.run(OutCols {
            ptr: bases[j].get(),
            n_rows,
            n_tokens,
            rows,
            _out: PhantomData,
        });
    };
    if n_tasks == 1 {
        task(0, false);
    } else {
        crate::team::for_each_task_in_runs(n_tasks, task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_output_once() {
        let (n_rows, n_tokens) = (37, 3);
        let mut out = vec![0f32; n_rows * n_tokens];
        for_each_row_chunk(&mut out, n_rows, n_tokens, 5, |mut c| {
            for t in 0..n_tokens {
                let rows = c.rows();
                for (v, r) in c.token(t).iter_mut().zip(rows) {
                    *v += (t * 100 + r) as f32;
                }
            }
        });
        for t in 0..n_tokens {
            for r in 0..n_rows {
                assert_eq!(out[t * n_rows + r], (t * 100 + r) as f32);
            }
        }
    }

    /// Tasks of one product differ little in size where they are few: the last is more than
    /// half the others (with many, the threads take them from each other).
    #[test]
    fn row_tasks_are_even() {
        for threads in [1, 2, 4] {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    for (n_rows, work) in [
                        (288, 306),
                        (768, 306),
                        (288, 816),
                        (32000, 306),
                        (2048, 2176),
                        (5632, 2176),
                        (256, 2176),
                        (4096, 4608),
                        (11008, 2304),
                    ] {
                        let rows = rows_task_rows(n_rows, work);
                        assert!(rows.is_multiple_of(4) && rows > 0);
                        let n = n_rows.div_ceil(rows);
                        let last = n_rows - (n - 1) * rows;
                        let few = n <= 8;
                        assert!(
                            !few || n == 1 || 2 * last > rows,
                            "{n_rows} x {work}: {rows}, {last}"
                        );
                    }
                });
        }
    }

    #[test]
    fn chunk_sizes_are_aligned() {
        for n in [1, 7, 64, 1000, 32000] {
            let c = chunk_rows(n, 4, 3);
            assert!(c.is_multiple_of(4) && c >= 3);
        }
    }
}
