//! `herd bench`: prompt-processing and generation throughput with llama-bench's method and
//! table, plus decode speed as a share of the measured memory-bandwidth ceiling.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use engine::{BandwidthProbe, BenchResult, BenchTest, KvType, PROBE_BYTES};
use model::Llama;

/// Arguments of `herd bench` (the thread counts come from the global `-t`).
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub sub: Option<BenchCommand>,
    /// Model file or directory; or give --synthetic instead.
    #[arg(required_unless_present = "synthetic", conflicts_with = "synthetic")]
    pub model: Option<PathBuf>,
    /// Build a random-weight model of this shape in memory instead of loading one:
    /// stories15m, tinyllama-1.1b, llama2-7b, llama2-13b, llama3-8b.
    #[arg(long, value_name = "SHAPE")]
    pub synthetic: Option<String>,
    /// Weight type of the --synthetic model: f32, f16, bf16, q8_0, q4_0, or one K-quant for
    /// every matrix (q2_k, q3_k, q4_k, q5_k, q6_k; shapes of whole 256-value super-blocks).
    #[arg(long = "type", value_name = "TYPE", requires = "synthetic")]
    pub ty: Option<String>,
    /// Prompt lengths to test, comma-separated (0: no prompt test).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<usize>,
    /// Generation lengths to test, comma-separated (0: no generation test).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<usize>,
    /// Context depths to run each test at, comma-separated: the test runs after that many
    /// random tokens were fed, outside the timing (llama-bench's `-d`; `tg128 @ d2048`).
    #[arg(
        short = 'd',
        long = "n-depth",
        value_delimiter = ',',
        default_value = "0"
    )]
    pub n_depth: Vec<usize>,
    /// Timed repetitions of each test (after one warm-up).
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub reps: usize,
    /// Output: a markdown table, or a JSON array of rows.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Md)]
    pub output: OutputFormat,
    /// Seed of the random token ids (and of the --synthetic weights).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Load a running server: streamed completions at each concurrency; aggregate tokens/s,
    /// time to first token and inter-token latency.
    Serve(crate::bench_serve::BenchServeArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Md,
    Json,
}

/// Passes over the bandwidth probe per thread count at startup; the best one counts.
const BANDWIDTH_PASSES: usize = 3;

/// Passes of each probe taken around the repetitions of a decode test; the best one counts (a
/// moment's stall of one pass would otherwise lower the ceiling the test is judged against).
const TEST_PROBE_PASSES: usize = 2;

/// What is benchmarked, as it appears in every row.
struct ModelInfo {
    filename: String,
    model_type: String,
    size: u64,
    n_params: u64,
    /// Weights one decoded token reads.
    bytes_per_token: u64,
    /// KV cache one decoded token reads per position of its context.
    kv_bytes_per_position: u64,
}

/// One finished test at one thread count.
struct Row {
    threads: usize,
    result: BenchResult,
    bandwidth: f64,
}

impl Row {
    /// Bytes one decoded token of the test reads on average: the weights, and the KV cache of
    /// its context (the depth and the tokens decoded before it, `depth + (n + 1) / 2`
    /// positions on average).
    fn bytes_per_token(&self, info: &ModelInfo) -> f64 {
        let n = self.result.test.n_tokens() as f64;
        let positions = self.result.depth as f64 + (n + 1.0) / 2.0;
        info.bytes_per_token as f64 + positions * info.kv_bytes_per_position as f64
    }

    /// Decode rate as a percentage of the bandwidth ceiling (generation rows only).
    fn pct_of_bandwidth(&self, info: &ModelInfo) -> Option<f64> {
        match self.result.test {
            BenchTest::Gen(_) if self.bandwidth.is_finite() => {
                Some(100.0 * self.result.avg_ts() * self.bytes_per_token(info) / self.bandwidth)
            }
            BenchTest::Gen(_) => None,
            BenchTest::Prompt(_) => None,
        }
    }
}

pub fn run(a: BenchArgs, threads: &[usize], kv_type: KvType) -> Result<()> {
    if let Some(BenchCommand::Serve(s)) = a.sub {
        return crate::bench_serve::run(s);
    }
    let threads = if threads.is_empty() {
        vec![rayon::current_num_threads()]
    } else {
        threads.to_vec()
    };
    let pp: Vec<usize> = a.n_prompt.iter().copied().filter(|&n| n > 0).collect();
    let tg: Vec<usize> = a.n_gen.iter().copied().filter(|&n| n > 0).collect();
    if pp.is_empty() && tg.is_empty() {
        bail!("nothing to run: every -p and -n length is 0");
    }
    if a.reps == 0 {
        bail!("-r must be at least 1");
    }
    // Names and paths are checked before the slow steps.
    let synthetic = match (&a.synthetic, &a.ty) {
        (Some(shape), Some(ty)) => {
            model::synthetic_config(shape)?;
            Some((shape.clone(), ty.clone(), model::synthetic_type(ty)?))
        }
        (Some(_), None) => {
            bail!("--synthetic needs --type (f32, f16, bf16, q8_0, q4_0, q2_k ... q6_k)")
        }
        (None, _) => None,
    };
    if let (None, Some(path)) = (&synthetic, &a.model) {
        engine::detect_format(path)?;
    }

    let bandwidth = measure_bandwidth(&threads, BANDWIDTH_PASSES);
    let mut mem = MemWatch::start();

    let t0 = Instant::now();
    let (mut model, filename) = match (synthetic, &a.model) {
        (Some((shape, name, ty)), _) => (
            model::synthetic(&shape, ty, a.seed)?,
            format!("synthetic:{}:{}", shape.to_lowercase(), name.to_lowercase()),
        ),
        (None, Some(path)) => (engine::load_model(path)?.0, path.display().to_string()),
        (None, None) => bail!("give a model path or --synthetic SHAPE"),
    };
    // Named and sized as stored (as llama-bench does); bytes per token as the kernels read them.
    let mut info = model_info(&model, filename);
    let repacked = model.repack_for_kernels();
    info.bytes_per_token = engine::weight_bytes(&model).per_token;
    info.kv_bytes_per_position =
        engine::KvSpec::new(&model.config, kv_type)?.position_bytes() as u64;
    let load_anon = status_kib("RssAnon:").map(|k| k * 1024);
    eprintln!(
        "{}: ready in {:.1} s{}",
        info.filename,
        t0.elapsed().as_secs_f64(),
        if repacked > 0 {
            format!(
                " ({} repacked for this CPU's kernels)",
                format_bytes(repacked)
            )
        } else {
            String::new()
        }
    );
    let lacking = model.bytes_lacking_faster_layout();
    if lacking > 0 {
        eprintln!(
            "note: {} of weights keep their stored layout (no memory for repacked copies): \
             decode reads them more slowly than it could",
            format_bytes(lacking)
        );
    }
    let depths = a.n_depth.clone();
    let longest = pp.iter().chain(&tg).copied().max().unwrap_or(0)
        + depths.iter().copied().max().unwrap_or(0);
    let n_ctx = model.config.max_seq_len;
    if engine::extend_context(&mut model, longest) {
        eprintln!("note: context raised from {n_ctx} to {longest} positions for the tests");
    }

    let md = a.output == OutputFormat::Md;
    let header = bandwidth_header(&bandwidth, &info);
    if md {
        println!("{header}\n");
        print_table_header();
    } else {
        eprintln!("{header}");
    }
    let mut rows = Vec::new();
    for (&t, &(_, bw)) in threads.iter().zip(&bandwidth) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .with_context(|| format!("cannot start {t} threads"))?;
        let tests = pp
            .iter()
            .map(|&n| BenchTest::Prompt(n))
            .chain(tg.iter().map(|&n| BenchTest::Gen(n)));
        let tests: Vec<(BenchTest, usize)> = tests
            .flat_map(|t| depths.iter().map(move |&d| (t, d)))
            .collect();
        for (test, depth) in tests {
            let (result, bw) = match test {
                BenchTest::Prompt(n) => (
                    pool.install(|| engine::run_pp(&model, kv_type, n, depth, a.reps, a.seed))?,
                    bw,
                ),
                BenchTest::Gen(n) => {
                    // Shared machines change under a benchmark, from one minute to the next:
                    // each decode test is set against the mean of the bandwidth measured
                    // before each of its repetitions and after the last.
                    let mut probes = Vec::new();
                    let mut probe = || {
                        probes.push(
                            mem.around_probe(|| measure_bandwidth(&[t], TEST_PROBE_PASSES)[0].1),
                        )
                    };
                    let r = pool.install(|| {
                        engine::run_tg(&model, kv_type, n, depth, a.reps, a.seed, &mut probe)
                    })?;
                    let mean = probes.iter().sum::<f64>() / probes.len().max(1) as f64;
                    let each: Vec<String> =
                        probes.iter().map(|b| format!("{:.1}", b / 1e9)).collect();
                    eprintln!(
                        "{} at {t} thread{}: bandwidth around the repetitions {} GB/s, mean {:.1}",
                        r.name(),
                        if t == 1 { "" } else { "s" },
                        each.join(", "),
                        mean / 1e9
                    );
                    (r, mean)
                }
            };
            let row = Row {
                threads: t,
                result,
                bandwidth: bw,
            };
            if md {
                print_row(&row, &info);
            }
            rows.push(row);
            mem.sample();
        }
    }

    let peak = mem.peak();
    if !md {
        let time = utc_now();
        let out: Vec<Value> = rows
            .iter()
            .map(|r| json_row(r, &info, peak, &time))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    match peak {
        Some(b) => eprintln!("peak RSS: {} (VmHWM)", format_bytes(b)),
        None => eprintln!("peak RSS: unknown (no VmHWM in /proc/self/status)"),
    }
    if let Some(anon) = load_anon {
        // Weights of a file are mapped (file-backed pages); what is anonymous after loading is
        // what was copied: repacked weights, norms, RoPE tables, anything else.
        let weights = if a.synthetic.is_some() {
            " (a --synthetic model's weights are anonymous memory themselves)".to_string()
        } else {
            let rest = anon.saturating_sub(repacked);
            format!(
                " ({} repacked weights; the rest {} = {:.1}% of the weights' {})",
                format_bytes(repacked),
                format_bytes(rest),
                100.0 * rest as f64 / info.size as f64,
                format_bytes(info.size)
            )
        };
        eprintln!(
            "anonymous memory after loading: {}{weights}",
            format_bytes(anon)
        );
    }
    if let Some(anon) = mem.peak_anon {
        eprintln!(
            "peak anonymous memory after a test: {} (with the KV cache, activations and scratch \
             buffers of the tests)",
            format_bytes(anon)
        );
    }
    Ok(())
}

/// Peak memory of the model's work, leaving out the bandwidth probe's buffer: the kernel's
/// peak counter (VmHWM) is read before each probe and reset after it.
struct MemWatch {
    peak_rss: Option<u64>,
    peak_anon: Option<u64>,
}

impl MemWatch {
    fn start() -> Self {
        reset_peak_rss();
        MemWatch {
            peak_rss: None,
            peak_anon: None,
        }
    }

    /// Records the peaks so far.
    fn sample(&mut self) {
        self.peak_rss = self.peak_rss.max(status_kib("VmHWM:").map(|k| k * 1024));
        self.peak_anon = self.peak_anon.max(status_kib("RssAnon:").map(|k| k * 1024));
    }

    fn around_probe<T>(&mut self, f: impl FnOnce() -> T) -> T {
        self.sample();
        let out = f();
        reset_peak_rss();
        out
    }

    fn peak(&mut self) -> Option<u64> {
        self.sample();
        self.peak_rss
    }
}

/// Resets VmHWM to the current RSS (Linux; elsewhere a no-op).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Bytes/s of a read pass at each thread count, best of `passes`, over one buffer (freed on
/// return); NaN, said on stderr, when the memory for the buffer cannot be had (a model that
/// fills the memory): the tests run on, without a percentage of the bandwidth.
fn measure_bandwidth(threads: &[usize], passes: usize) -> Vec<(usize, f64)> {
    match BandwidthProbe::new(PROBE_BYTES) {
        Ok(probe) => threads
            .iter()
            .map(|&t| (t, probe.measure(t, passes)))
            .collect(),
        Err(e) => {
            eprintln!("note: no bandwidth measured (its {PROBE_BYTES}-byte buffer: {e})");
            threads.iter().map(|&t| (t, f64::NAN)).collect()
        }
    }
}

fn bandwidth_header(bandwidth: &[(usize, f64)], info: &ModelInfo) -> String {
    let per: Vec<String> = bandwidth
        .iter()
        .map(|&(t, bw)| {
            let s = if t == 1 { "" } else { "s" };
            format!("{t} thread{s} {:.1} GB/s", bw / 1e9)
        })
        .collect();
    format!(
        "memory read bandwidth (best of {BANDWIDTH_PASSES} passes over {} GiB): {}; \
         bytes read per decoded token: {}",
        PROBE_BYTES >> 30,
        per.join(", "),
        format_bytes(info.bytes_per_token)
    )
}

fn model_info(model: &Llama, filename: String) -> ModelInfo {
    let bytes = engine::weight_bytes(model);
    let n_params = model.config.n_params() as u64;
    let ty = format!("{:?}", engine::main_weight_type(model)).to_uppercase();
    ModelInfo {
        filename,
        model_type: format!("llama {} {ty}", size_label(n_params)),
        size: bytes.total,
        n_params,
        bytes_per_token: bytes.per_token,
        kv_bytes_per_position: 0,
    }
}

/// "1.1B", "15M": the parameter count as models are named.
fn size_label(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n >= 10e9 => format!("{:.0}B", n / 1e9),
        n if n >= 1e9 => format!("{:.1}B", n / 1e9),
        n => format!("{:.0}M", n / 1e6),
    }
}

/// llama-bench's size column: MiB below 1 GiB, GiB above.
pub(crate) fn format_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.2} MiB", b / (1u64 << 20) as f64)
    }
}

/// llama-bench's params column.
fn format_params(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2} M", n / 1e6)
    } else {
        format!("{:.2} K", n / 1e3)
    }
}

const WIDTHS: [usize; 8] = [24, 10, 10, 7, 7, 8, 20, 8];

fn print_line(cells: [&str; 8], right: [bool; 8]) {
    let mut out = String::from("|");
    for ((c, w), r) in cells.iter().zip(WIDTHS).zip(right) {
        if r {
            out.push_str(&format!(" {c:>w$} |"));
        } else {
            out.push_str(&format!(" {c:<w$} |"));
        }
    }
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{out}").and_then(|_| stdout.flush());
}

const RIGHT: [bool; 8] = [false, true, true, false, true, true, true, true];

fn print_table_header() {
    print_line(
        [
            "model", "size", "params", "backend", "threads", "test", "t/s", "% bw",
        ],
        RIGHT,
    );
    let rules: Vec<String> = WIDTHS
        .iter()
        .zip(RIGHT)
        .map(|(&w, r)| {
            if r {
                format!("{}:", "-".repeat(w - 1))
            } else {
                "-".repeat(w)
            }
        })
        .collect();
    print_line(std::array::from_fn(|i| rules[i].as_str()), [false; 8]);
}

fn print_row(r: &Row, info: &ModelInfo) {
    let ts = format!("{:.2} ± {:.2}", r.result.avg_ts(), r.result.stddev_ts());
    let pct = r
        .pct_of_bandwidth(info)
        .map_or_else(String::new, |p| format!("{p:.1}"));
    print_line(
        [
            &info.model_type,
            &format_bytes(info.size),
            &format_params(info.n_params),
            "CPU",
            &r.threads.to_string(),
            &r.result.name(),
            &ts,
            &pct,
        ],
        RIGHT,
    );
}

/// A row with llama-bench's JSON field names, plus the bandwidth figures and peak RSS.
fn json_row(r: &Row, info: &ModelInfo, peak_rss: Option<u64>, time: &str) -> Value {
    let (n_prompt, n_gen) = match r.result.test {
        BenchTest::Prompt(n) => (n, 0),
        BenchTest::Gen(n) => (0, n),
    };
    json!({
        "model_filename": info.filename,
        "model_type": info.model_type,
        "model_size": info.size,
        "model_n_params": info.n_params,
        "backends": "CPU",
        "n_threads": r.threads,
        "n_prompt": n_prompt,
        "n_gen": n_gen,
        "n_depth": r.result.depth,
        "test": r.result.name(),
        "test_time": time,
        "avg_ns": r.result.avg_ns().round() as u64,
        "stddev_ns": r.result.stddev_ns().round() as u64,
        "avg_ts": r.result.avg_ts(),
        "stddev_ts": r.result.stddev_ts(),
        "samples_ns": r.result.samples_ns,
        "samples_ts": r.result.samples_ts(),
        "bandwidth_gbps": r.bandwidth / 1e9,
        "bytes_per_token": info.bytes_per_token,
        "kv_bytes_per_token": r.bytes_per_token(info) - info.bytes_per_token as f64,
        "pct_of_bandwidth": r.pct_of_bandwidth(info),
        "peak_rss_bytes": peak_rss,
    })
}

/// A `kB` field of /proc/self/status, e.g. `VmHWM:`.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The current time as ISO 8601 UTC, e.g. `2026-11-26T18:05:09Z`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
