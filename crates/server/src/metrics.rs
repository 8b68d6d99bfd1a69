//! Counters, gauges and latency histograms in Prometheus' text exposition format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Histogram bucket bounds (seconds) for time to first token and inter-token latency.
const TTFT_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const ITL_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A cumulative histogram with fixed bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    inner: Mutex<HistState>,
}

#[derive(Debug, Default, Clone)]
struct HistState {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            inner: Mutex::new(HistState {
                counts: vec![0; bounds.len()],
                ..HistState::default()
            }),
        }
    }

    pub fn observe(&self, v: f64) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            s.counts[i] += 1;
        }
        s.sum += v;
        s.count += 1;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).count
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let s = self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, c) in self.bounds.iter().zip(&s.counts) {
            cum += c;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", s.count);
        let _ = writeln!(out, "{name}_sum {}", s.sum);
        let _ = writeln!(out, "{name}_count {}", s.count);
    }
}

/// What the server counts itself; the scheduler's own figures are added when rendering.
#[derive(Debug)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub requests_ok: AtomicU64,
    pub requests_failed: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub generation_tokens: AtomicU64,
    pub ttft: Histogram,
    pub itl: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: AtomicU64::new(0),
            requests_ok: AtomicU64::new(0),
            requests_failed: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            ttft: Histogram::new(TTFT_BOUNDS),
            itl: Histogram::new(ITL_BOUNDS),
        }
    }
}

/// Gauges read from the scheduler at render time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub queued: usize,
    pub running: usize,
    pub kv_blocks_used: usize,
    pub kv_blocks_free: usize,
    pub kv_blocks_cached: usize,
    pub prefix_cache_hit_tokens: u64,
    pub steps: u64,
    pub preemptions: u64,
}

pub fn add(c: &AtomicU64, v: u64) {
    c.fetch_add(v, Ordering::Relaxed);
}

impl Metrics {
    /// The exposition text.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: usize| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        counter(
            &mut out,
            "herd_requests_total",
            "Generation requests received.",
            get(&self.requests),
        );
        counter(
            &mut out,
            "herd_requests_succeeded_total",
            "Generation requests answered in full.",
            get(&self.requests_ok),
        );
        counter(
            &mut out,
            "herd_requests_failed_total",
            "Generation requests answered with an error.",
            get(&self.requests_failed),
        );
        counter(
            &mut out,
            "herd_prompt_tokens_total",
            "Prompt tokens submitted.",
            get(&self.prompt_tokens),
        );
        counter(
            &mut out,
            "herd_generation_tokens_total",
            "Tokens generated.",
            get(&self.generation_tokens),
        );
        counter(
            &mut out,
            "herd_prefix_cache_hit_tokens_total",
            "Prompt tokens served from the prefix cache.",
            g.prefix_cache_hit_tokens,
        );
        counter(
            &mut out,
            "herd_scheduler_steps_total",
            "Forward steps of the scheduler.",
            g.steps,
        );
        counter(
            &mut out,
            "herd_preemptions_total",
            "Sequences preempted for lack of KV blocks.",
            g.preemptions,
        );
        gauge(
            &mut out,
            "herd_requests_waiting",
            "Requests queued, not yet running.",
            g.queued,
        );
        gauge(
            &mut out,
            "herd_requests_running",
            "Sequences in the running batch.",
            g.running,
        );
        gauge(
            &mut out,
            "herd_kv_blocks_used",
            "KV cache blocks in use.",
            g.kv_blocks_used,
        );
        gauge(
            &mut out,
            "herd_kv_blocks_free",
            "KV cache blocks free.",
            g.kv_blocks_free,
        );
        gauge(
            &mut out,
            "herd_kv_blocks_cached",
            "Free KV blocks holding cached prompt prefixes.",
            g.kv_blocks_cached,
        );
        self.ttft.write(
            &mut out,
            "herd_time_to_first_token_seconds",
            "Time from request arrival to its first token.",
        );
        self.itl.write(
            &mut out,
            "herd_inter_token_latency_seconds",
            "Time between consecutive tokens of a sequence.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        for v in [0.004, 0.02, 0.02, 100.0] {
            m.ttft.observe(v);
        }
        let text = m.render(&Gauges::default());
        assert!(text.contains("herd_time_to_first_token_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("herd_time_to_first_token_seconds_bucket{le=\"0.025\"} 3\n"));
        assert!(text.contains("herd_time_to_first_token_seconds_bucket{le=\"30\"} 3\n"));
        assert!(text.contains("herd_time_to_first_token_seconds_bucket{le=\"+Inf\"} 4\n"));
        assert!(text.contains("herd_time_to_first_token_seconds_count 4\n"));
    }
}
