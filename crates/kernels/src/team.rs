//! A team of spinning threads for the short parallel sections of a forward pass.
//!
//! Decoding one token runs about eight parallel sections per layer (the matrix products and the
//! attention), each tens of microseconds long. rayon's idle workers go to sleep between such
//! sections, and waking one is a context switch that costs about as much as a section on a
//! virtual machine (`perf stat` on `herd bench -n 128 -t 2` counted about 60 of them per token).
//! A team keeps its helpers spinning on an atomic for [`SPIN`] after each section, so the next
//! one starts within a cache-line transfer; only then do they park.
//!
//! One team per thread count (`rayon::current_num_threads()` of the caller, so `-t N` and the
//! pools of `herd bench -t 1,2` size it), created on first use: the caller plus `N - 1` helper
//! threads. Each thread starts on a contiguous share of the tasks, in order, and a thread that
//! runs out takes the back half of what another has left (so the weights of a product are read
//! as a few long streams, one per thread, not task by task in turns). One caller at a time runs
//! on a team; a second, concurrent caller (tests running in parallel, a nested section) falls
//! back to rayon, which gives the same results: tasks never share outputs, so who runs them
//! does not matter.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Mutex, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use rayon::prelude::*;

/// How long a helper spins after its last task before it parks: longer than the serial gaps of
/// a forward pass (norms, RoPE, sampling between tokens), short enough that an idle team gives
/// its cores back at once to anything else.
const SPIN: Duration = Duration::from_millis(2);

/// Runs `f(i)` for every `i` in `0..n_tasks`, spread over the caller's threads, and returns when
/// all have returned. Each thread runs runs of consecutive tasks in increasing order, so the
/// caller should give a few per thread to balance a thread slowed by a neighbour.
///
/// # Panics
/// When a task panics (after all tasks have finished).
pub fn for_each_task<F: Fn(usize) + Sync>(n_tasks: usize, f: F) {
    for_each_task_in_runs(n_tasks, |i, _| f(i));
}

/// [`for_each_task`], telling each task whether it continues a run: `f(i, true)` only when the
/// same thread ran task `i - 1` just before it (data that tasks read in order then streams on
/// from where the last task stopped). On the team and on one thread that is said whenever it is
/// so; a section that falls back to rayon says `false` throughout.
///
/// # Panics
/// When a task panics (after all tasks have finished).
pub fn for_each_task_in_runs<F: Fn(usize, bool) + Sync>(n_tasks: usize, f: F) {
    let threads = rayon::current_num_threads();
    if n_tasks <= 1 || threads <= 1 || IN_TEAM.get() {
        (0..n_tasks).for_each(|i| f(i, i > 0));
        return;
    }
    if !team_enabled() {
        (0..n_tasks).into_par_iter().for_each(|i| f(i, false));
        return;
    }
    let team = team(threads);
    if team
        .busy
        .compare_exchange(false, true, Acquire, Relaxed)
        .is_err()
    {
        (0..n_tasks).into_par_iter().for_each(|i| f(i, false));
        return;
    }
    let _busy = Unbusy(&team.busy);
    IN_TEAM.set(true);
    let _in_team = Leave;
    team.run(n_tasks, &f);
}

/// Runs `f` on every item of `items`, moved into tasks of [`for_each_task`]: the way to hand
/// threads disjoint `&mut` pieces of a buffer (`chunks_mut` collected). Each item is a task of
/// its own, or, when there are more than [`ITEMS_PER_THREAD`] per thread (a prompt's rows),
/// runs of consecutive items are: taking a task costs a few cache-line transfers between
/// threads, which one row's norm or quantization does not pay for.
pub fn for_each_item<T: Send, F: Fn(T) + Sync>(items: Vec<T>, f: F) {
    let threads = rayon::current_num_threads().max(1);
    let per_task = if items.len() > threads * ITEMS_PER_THREAD {
        items.len().div_ceil(threads * ITEM_TASKS_PER_THREAD)
    } else {
        1
    };
    // One slot per item (no allocation per task): each task takes the items of its run.
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    for_each_task(slots.len().div_ceil(per_task), |i| {
        let run = &slots[i * per_task..((i + 1) * per_task).min(slots.len())];
        for slot in run {
            let item = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(item) = item {
                f(item);
            }
        }
    });
}

/// Items per thread above which [`for_each_item`] groups them into runs.
const ITEMS_PER_THREAD: usize = 32;
/// Tasks per thread of [`for_each_item`]'s runs: at two threads, a 256-token prompt's rows of
/// norms, RoPE and quantization go eight to a task. The threads of TinyLlama Q4_0 `-p 512`
/// waited for each other through 35% of these sections' time with a task per row.
const ITEM_TASKS_PER_THREAD: usize = 16;

/// Lines a thread prefetches between two looks at whether work has arrived: about 100 ns of
/// a core's memory bandwidth.
const AHEAD_STEP: usize = 16;

/// Bits of a packed read-ahead slot that count the lines left (the rest hold the address of
/// the next line, in lines: user addresses of x86-64 and AArch64 are below 2^48 bytes).
const LEFT_BITS: u32 = 22;

fn pack_lines(line: usize, left: usize) -> u64 {
    ((line as u64) << LEFT_BITS) | left as u64
}

fn unpack_lines(v: u64) -> (usize, usize) {
    (
        (v >> LEFT_BITS) as usize,
        (v & ((1 << LEFT_BITS) - 1)) as usize,
    )
}

/// Declares what each thread of the caller's team is expected to read first in the next
/// parallel section: `ranges[k]` for thread `k` (the caller is thread 0 and takes the first
/// share of a section's tasks, helper `k` the `k`-th). Until then, whenever a thread of the
/// team has nothing to do (between sections, or at the end of one while another thread
/// finishes), it asks for its range's lines to be brought into its cache, a few at a time,
/// so that memory keeps streaming through the gaps of a forward pass. A hint only: the
/// addresses are never read, so a range that is gone by then costs nothing but the prefetch.
/// Replaces the previous declaration; does nothing without a team (one thread, or the team
/// busy with another caller).
pub(crate) fn read_ahead(ranges: &[&[u8]]) {
    let threads = rayon::current_num_threads();
    if threads <= 1 || IN_TEAM.get() || !team_enabled() {
        return;
    }
    let team = team(threads);
    for (k, slot) in team.ahead.iter().enumerate() {
        let v = match ranges.get(k) {
            Some(r) if !r.is_empty() => {
                let first = r.as_ptr() as usize / 64;
                let last = (r.as_ptr() as usize + r.len() - 1) / 64;
                pack_lines(first, (last - first + 1).min((1 << LEFT_BITS) - 1))
            }
            _ => 0,
        };
        slot.0.store(v, Relaxed);
    }
}

thread_local! {
    /// Set on helper threads, and on a caller while its team runs: a section started from
    /// inside a task runs serially on its thread.
    static IN_TEAM: Cell<bool> = const { Cell::new(false) };
}

/// `HERD_TEAM=0` sends every section to rayon instead (to compare the two).
fn team_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("HERD_TEAM").map_or(true, |v| v != "0"))
}

/// Clears `busy` when the caller leaves, panicking or not.
struct Unbusy<'a>(&'a AtomicBool);
impl Drop for Unbusy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Release);
    }
}

/// Clears the caller's [`IN_TEAM`] when it leaves.
struct Leave;
impl Drop for Leave {
    fn drop(&mut self) {
        IN_TEAM.set(false);
    }
}

/// One parallel section, on the caller's stack while it runs.
struct Job<'a> {
    f: &'a (dyn Fn(usize, bool) + Sync),
    /// Per thread (the caller first, then the helpers): the tasks `start..end` it has left,
    /// packed by [`pack`]. The owner takes from the front; a thread that has none left takes
    /// the back half of another's.
    shares: &'a [Slot],
    done: AtomicUsize,
    panicked: AtomicBool,
}

/// A packed per-thread atomic on a cache line of its own (its owner changes it often): a
/// thread's tasks left ([`pack`]) or its read-ahead ([`pack_lines`]).
#[repr(align(128))]
struct Slot(AtomicU64);

fn pack(start: usize, end: usize) -> u64 {
    ((start as u64) << 32) | end as u64
}

fn unpack(v: u64) -> (usize, usize) {
    ((v >> 32) as usize, (v & 0xFFFF_FFFF) as usize)
}

impl Job<'_> {
    /// Runs tasks until none is left anywhere: the own share from its front, then halves taken
    /// from the backs of the others' shares (into the own share, so they can be split again).
    fn work(&self, me: usize) {
        let mut last = None;
        // Counted here and added once on leaving: a shared counter bumped after every task
        // would move its cache line between the cores at every task.
        let mut finished = 0;
        loop {
            while let Some(i) = self.take_front(me) {
                let follows = last.is_some_and(|l: usize| l + 1 == i);
                if catch_unwind(AssertUnwindSafe(|| (self.f)(i, follows))).is_err() {
                    self.panicked.store(true, Relaxed);
                }
                last = Some(i);
                finished += 1;
            }
            if !self.steal_into(me) {
                break;
            }
        }
        if finished > 0 {
            self.done.fetch_add(finished, AcqRel);
        }
    }

    fn take_front(&self, me: usize) -> Option<usize> {
        let share = &self.shares[me].0;
        let mut v = share.load(Acquire);
        loop {
            let (start, end) = unpack(v);
            if start >= end {
                return None;
            }
            match share.compare_exchange_weak(v, pack(start + 1, end), AcqRel, Acquire) {
                Ok(_) => return Some(start),
                Err(now) => v = now,
            }
        }
    }

    /// Moves the back half of the first other share with tasks left into the own (empty)
    /// share; false when every share is empty.
    fn steal_into(&self, me: usize) -> bool {
        let n = self.shares.len();
        for k in (1..n).map(|d| (me + d) % n) {
            let share = &self.shares[k].0;
            let mut v = share.load(Acquire);
            loop {
                let (start, end) = unpack(v);
                if start >= end {
                    break;
                }
                let mid = start + (end - start) / 2;
                match share.compare_exchange_weak(v, pack(start, mid), AcqRel, Acquire) {
                    Ok(_) => {
                        // Only this thread fills its own share, and it was empty: no one else
                        // changes it meanwhile (a thief finds it empty and moves on).
                        self.shares[me].0.store(pack(mid, end), Release);
                        return true;
                    }
                    Err(now) => v = now,
                }
            }
        }
        false
    }
}

struct Team {
    /// The job being run, null between jobs.
    job: AtomicPtr<Job<'static>>,
    /// Bumped each time a job is published.
    epoch: AtomicUsize,
    /// Helpers between looking at `job` and letting go of it; the caller waits for zero before
    /// its job leaves the stack.
    inside: AtomicUsize,
    /// Held by the one caller running a job.
    busy: AtomicBool,
    /// Per helper: parked, or about to park.
    asleep: Vec<AtomicBool>,
    /// Per thread, the caller first: its share of the running job ([`Job::shares`]); set by
    /// the caller before it publishes a job.
    shares: Vec<Slot>,
    /// Per thread, the caller first: lines it prefetches while it has nothing else to do
    /// ([`read_ahead`]), packed by [`pack_lines`].
    ahead: Vec<Slot>,
    threads: OnceLock<Vec<Thread>>,
}

/// The team of `size` threads (the caller and `size - 1` helpers), made on first use and kept
/// for the life of the process.
fn team(size: usize) -> &'static Team {
    static TEAMS: Mutex<Vec<(usize, &'static Team)>> = Mutex::new(Vec::new());
    let mut teams = TEAMS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&(_, t)) = teams.iter().find(|(s, _)| *s == size) {
        return t;
    }
    let helpers = size - 1;
    let t: &'static Team = Box::leak(Box::new(Team {
        job: AtomicPtr::new(std::ptr::null_mut()),
        epoch: AtomicUsize::new(0),
        inside: AtomicUsize::new(0),
        busy: AtomicBool::new(false),
        asleep: (0..helpers).map(|_| AtomicBool::new(false)).collect(),
        shares: (0..size).map(|_| Slot(AtomicU64::new(0))).collect(),
        ahead: (0..size).map(|_| Slot(AtomicU64::new(0))).collect(),
        threads: OnceLock::new(),
    }));
    let threads = (0..helpers)
        .map(|i| {
            thread::Builder::new()
                .name(format!("herd-team{size}-{i}"))
                .spawn(move || t.helper(i))
                .expect("spawning a worker thread")
                .thread()
                .clone()
        })
        .collect();
    t.threads.set(threads).ok();
    teams.push((size, t));
    t
}

impl Team {
    /// Publishes a job, works on it beside the helpers, and waits until every task is done and
    /// no helper still looks at it.
    fn run(&self, n_tasks: usize, f: &(dyn Fn(usize, bool) + Sync)) {
        assert!(n_tasks < 1 << 32, "{n_tasks} tasks in one section");
        // Contiguous shares, the first ones one task longer when the count does not divide.
        let n = self.shares.len();
        let mut start = 0;
        for (k, share) in self.shares.iter().enumerate() {
            let end = start + n_tasks / n + usize::from(k < n_tasks % n);
            share.0.store(pack(start, end), Relaxed);
            start = end;
        }
        let job = Job {
            f,
            shares: &self.shares,
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
        };
        let ptr = (&job as *const Job<'_>).cast::<Job<'static>>().cast_mut();
        self.job.store(ptr, SeqCst);
        self.epoch.fetch_add(1, SeqCst);
        if let Some(threads) = self.threads.get() {
            for (asleep, t) in self.asleep.iter().zip(threads) {
                if asleep.load(SeqCst) {
                    t.unpark();
                }
            }
        }
        job.work(0);
        while job.done.load(Acquire) < n_tasks {
            if !self.read_some_ahead(0) {
                std::hint::spin_loop();
            }
        }
        self.job.store(std::ptr::null_mut(), SeqCst);
        // A helper that saw the pointer before it was cleared may still be in `work`, about to
        // find no task left; the job must outlive that.
        while self.inside.load(SeqCst) != 0 {
            std::hint::spin_loop();
        }
        if job.panicked.load(Relaxed) {
            panic!("a parallel task panicked");
        }
    }

    /// Prefetches the next [`AHEAD_STEP`] lines of thread `k`'s read-ahead, if it has any left;
    /// false when it has none.
    fn read_some_ahead(&self, k: usize) -> bool {
        let slot = &self.ahead[k].0;
        let v = slot.load(Relaxed);
        let (line, left) = unpack_lines(v);
        if left == 0 {
            return false;
        }
        let n = left.min(AHEAD_STEP);
        // Only this thread takes from its slot; a new declaration in between makes the
        // exchange fail, and the lines are taken from the new one on the next call.
        if slot
            .compare_exchange(v, pack_lines(line + n, left - n), Relaxed, Relaxed)
            .is_ok()
        {
            crate::stream::prefetch_lines_l2(line * 64, n);
        }
        true
    }

    /// A helper's life: take part in each published job; spin while idle, park after [`SPIN`].
    fn helper(&self, me: usize) {
        IN_TEAM.set(true);
        let mut seen = self.epoch.load(SeqCst);
        let mut idle_since = Instant::now();
        let mut polls = 0u32;
        loop {
            let epoch = self.epoch.load(Acquire);
            if epoch != seen {
                seen = epoch;
                self.inside.fetch_add(1, SeqCst);
                let p = self.job.load(SeqCst);
                if !p.is_null() {
                    // SAFETY: `p` was published by `run` and is not cleared yet; `run` keeps the
                    // job alive until `inside` is back to zero, which this helper's increment
                    // (made before loading `p`) prevents until it leaves.
                    unsafe { &*p }.work(me + 1);
                }
                self.inside.fetch_sub(1, SeqCst);
                idle_since = Instant::now();
                polls = 0;
                continue;
            }
            if self.read_some_ahead(me + 1) {
                continue;
            }
            std::hint::spin_loop();
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(1024) && idle_since.elapsed() > SPIN {
                self.asleep[me].store(true, SeqCst);
                // `run` bumps `epoch` before it reads `asleep`: either this load sees the new
                // epoch, or `run` sees this helper asleep and unparks it.
                if self.epoch.load(SeqCst) == seen {
                    thread::park();
                }
                self.asleep[me].store(false, SeqCst);
                idle_since = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    }

    fn counts(n_tasks: usize) -> Vec<AtomicUsize> {
        let hits: Vec<AtomicUsize> = (0..n_tasks).map(|_| AtomicUsize::new(0)).collect();
        for_each_task(n_tasks, |i| {
            hits[i].fetch_add(1, Relaxed);
        });
        hits
    }

    #[test]
    fn every_task_runs_once() {
        for threads in [1, 2, 3] {
            pool(threads).install(|| {
                for n in [0, 1, 2, 7, 100, 1000] {
                    for _ in 0..20 {
                        assert!(counts(n).iter().all(|h| h.load(Relaxed) == 1), "{n}");
                    }
                }
            });
        }
    }

    #[test]
    fn runs_are_told_apart() {
        for threads in [1, 2, 3] {
            pool(threads).install(|| {
                for n in [2, 5, 64, 301] {
                    let log = Mutex::new(Vec::new());
                    for_each_task_in_runs(n, |i, follows| {
                        log.lock()
                            .unwrap()
                            .push((thread::current().id(), i, follows));
                    });
                    let log = log.into_inner().unwrap();
                    assert_eq!(log.len(), n);
                    let mut seen: Vec<usize> = log.iter().map(|e| e.1).collect();
                    seen.sort_unstable();
                    assert!(seen.iter().enumerate().all(|(k, &i)| k == i), "{n}");
                    // Per thread, in the order it ran them: `follows` only when the task before
                    // it on that thread was the one before it in number; on one thread, always
                    // then. (A section that falls back to rayon, as when tests run at once,
                    // may say false where it could say true.)
                    for (j, &(id, i, follows)) in log.iter().enumerate() {
                        let prev = log[..j].iter().rev().find(|e| e.0 == id).map(|e| e.1);
                        let after_prev = prev.is_some_and(|p| p + 1 == i);
                        assert!(!follows || after_prev, "{n} {i}");
                        if threads == 1 {
                            assert_eq!(follows, after_prev, "{n} {i}");
                        }
                    }
                }
            });
        }
    }

    #[test]
    fn read_ahead_slots_hand_out_their_lines_once() {
        assert_eq!(
            unpack_lines(pack_lines(0x03ff_ffff_ffff, 123)),
            (0x03ff_ffff_ffff, 123)
        );
        // A team size no other test uses, so nothing else takes from its slots; the caller's
        // slot (0) is taken from only here.
        pool(5).install(|| {
            let buf = vec![0u8; 64 * 100];
            read_ahead(&[&buf[64..64 * 41], &buf]);
            let team = team(5);
            let mut calls = 0;
            while team.read_some_ahead(0) {
                calls += 1;
            }
            // Forty lines' worth of bytes (on 40 or 41 lines, by the buffer's alignment),
            // sixteen lines at a time.
            assert_eq!(calls, 3);
            assert_eq!(unpack_lines(team.ahead[0].0.load(Relaxed)).1, 0);
            // Sections still run, and a later declaration replaces the earlier.
            assert!(counts(64).iter().all(|h| h.load(Relaxed) == 1));
            read_ahead(&[]);
            assert!(!team.read_some_ahead(0));
        });
    }

    #[test]
    fn items_are_handed_out_once() {
        pool(2).install(|| {
            let mut v = vec![0u32; 1000];
            for_each_item(v.chunks_mut(7).enumerate().collect(), |(i, c)| {
                c.iter_mut().for_each(|x| *x += i as u32 + 1);
            });
            assert!(v.iter().enumerate().all(|(j, &x)| x == (j / 7) as u32 + 1));
        });
    }

    #[test]
    fn runs_again_after_the_helpers_park() {
        pool(2).install(|| {
            assert!(counts(16).iter().all(|h| h.load(Relaxed) == 1));
            thread::sleep(SPIN * 5);
            assert!(counts(16).iter().all(|h| h.load(Relaxed) == 1));
        });
    }

    #[test]
    fn nested_and_concurrent_sections() {
        pool(2).install(|| {
            let total = AtomicUsize::new(0);
            for_each_task(8, |_| {
                for_each_task(8, |_| {
                    total.fetch_add(1, Relaxed);
                });
            });
            assert_eq!(total.load(Relaxed), 64);
        });
        // Several callers at once: one gets the team, the others go through rayon.
        let total = AtomicUsize::new(0);
        thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    pool(2).install(|| {
                        for _ in 0..200 {
                            for_each_task(10, |_| {
                                total.fetch_add(1, Relaxed);
                            });
                        }
                    })
                });
            }
        });
        assert_eq!(total.load(Relaxed), 4 * 200 * 10);
    }

    #[test]
    fn a_panicking_task_panics_the_caller_and_the_team_goes_on() {
        pool(2).install(|| {
            let r = catch_unwind(|| {
                for_each_task(8, |i| {
                    if i == 5 {
                        panic!("task 5");
                    }
                })
            });
            assert!(r.is_err());
            assert!(counts(50).iter().all(|h| h.load(Relaxed) == 1));
        });
    }
}
