//! `herd bench serve`: a load generator for a running OpenAI-compatible server. It streams
//! completions at each concurrency and reports aggregate tokens/s, time to first token and
//! inter-token latency.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use server::client::{self, Endpoint};

use crate::bench::OutputFormat;

#[derive(Args, Debug, Clone)]
pub struct BenchServeArgs {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: String,
    /// Concurrent streams, comma-separated; each count is one run.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub concurrency: Vec<usize>,
    /// Requests per run.
    #[arg(long, default_value_t = 32)]
    pub requests: usize,
    /// Tokens to generate per request.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Prompt of every request (each request gets its own seed).
    #[arg(long, default_value = "Once upon a time")]
    pub prompt: String,
    /// API key (also read from HERD_API_KEY).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Output: a markdown table, or a JSON array of rows.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Md)]
    pub output: OutputFormat,
}

/// What one streamed request measured.
struct Sample {
    tokens: usize,
    ttft: Option<f64>,
    itl: Vec<f64>,
}

struct Level {
    concurrency: usize,
    requests: usize,
    tokens: usize,
    secs: f64,
    ttft: Vec<f64>,
    itl: Vec<f64>,
}

/// The `p`-th percentile (0..=100) by nearest rank; `None` for no data.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn one_request(ep: &Endpoint, model: &str, a: &BenchServeArgs, seed: usize) -> Result<Sample> {
    let body = json!({
        "model": model,
        "prompt": a.prompt,
        "max_tokens": a.max_tokens,
        "stream": true,
        "stream_options": {"include_usage": true},
        "seed": seed,
    });
    let start = Instant::now();
    let resp = client::post_json(ep, "/v1/completions", &body)?;
    if resp.status != 200 {
        let status = resp.status;
        bail!(
            "the server answered {status}: {}",
            resp.text().unwrap_or_default()
        );
    }
    let mut last: Option<Instant> = None;
    let mut ttft = None;
    let mut itl = Vec::new();
    let mut tokens = 0;
    for data in resp.events() {
        let data = data?;
        if data == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(&data)
            .with_context(|| format!("a stream event is not JSON: {data}"))?;
        if let Some(e) = v.get("error") {
            bail!("the server reported an error: {e}");
        }
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            tokens = n as usize;
        }
        let has_text = v["choices"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["text"].as_str().is_some_and(|t| !t.is_empty()))
        });
        if has_text {
            let now = Instant::now();
            match last {
                None => ttft = Some((now - start).as_secs_f64()),
                Some(t) => itl.push((now - t).as_secs_f64()),
            }
            last = Some(now);
        }
    }
    Ok(Sample { tokens, ttft, itl })
}

fn run_level(ep: &Endpoint, model: &str, a: &BenchServeArgs, concurrency: usize) -> Result<Level> {
    let next = AtomicUsize::new(0);
    let samples = Mutex::new(Vec::new());
    let errors = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..concurrency {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= a.requests {
                    break;
                }
                match one_request(ep, model, a, i) {
                    Ok(x) => samples.lock().unwrap().push(x),
                    Err(e) => errors.lock().unwrap().push(e),
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    if let Some(e) = errors.into_inner().unwrap().into_iter().next() {
        return Err(e.context(format!("at concurrency {concurrency}")));
    }
    let samples = samples.into_inner().unwrap();
    let mut ttft: Vec<f64> = samples.iter().filter_map(|s| s.ttft).collect();
    let mut itl: Vec<f64> = samples.iter().flat_map(|s| s.itl.iter().copied()).collect();
    ttft.sort_by(f64::total_cmp);
    itl.sort_by(f64::total_cmp);
    Ok(Level {
        concurrency,
        requests: samples.len(),
        tokens: samples.iter().map(|s| s.tokens).sum(),
        secs,
        ttft,
        itl,
    })
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1}", v * 1e3))
}

pub fn run(a: BenchServeArgs) -> Result<()> {
    if a.concurrency.contains(&0) || a.concurrency.is_empty() {
        bail!("--concurrency takes counts of at least 1");
    }
    if a.requests == 0 || a.max_tokens == 0 {
        bail!("--requests and --max-tokens must be at least 1");
    }
    let key = a
        .api_key
        .clone()
        .or_else(|| std::env::var(crate::serve::API_KEY_ENV).ok())
        .filter(|k| !k.is_empty());
    let ep = Endpoint::parse(&a.url, key).map_err(anyhow::Error::msg)?;
    let models =
        client::get(&ep, "/v1/models").with_context(|| format!("cannot reach {}", a.url))?;
    if models.status != 200 {
        let status = models.status;
        bail!(
            "GET /v1/models answered {status}: {}",
            models.text().unwrap_or_default()
        );
    }
    let models = models.json()?;
    let model = models["data"][0]["id"]
        .as_str()
        .context("GET /v1/models lists no model")?
        .to_string();
    // One short request first so that start-up costs stay out of the figures.
    one_request(
        &ep,
        &model,
        &BenchServeArgs {
            max_tokens: 2,
            ..a.clone()
        },
        0,
    )?;
    let mut levels = Vec::new();
    for &c in &a.concurrency {
        levels.push(run_level(&ep, &model, &a, c)?);
    }
    match a.output {
        OutputFormat::Md => {
            println!(
                "model: {model}, {} requests per run, max_tokens {}",
                a.requests, a.max_tokens
            );
            println!();
            println!("| concurrency | requests | tokens | seconds | tokens/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |");
            println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            for l in &levels {
                println!(
                    "| {} | {} | {} | {:.2} | {:.1} | {} | {} | {} | {} |",
                    l.concurrency,
                    l.requests,
                    l.tokens,
                    l.secs,
                    l.tokens as f64 / l.secs,
                    ms(percentile(&l.ttft, 50.0)),
                    ms(percentile(&l.ttft, 99.0)),
                    ms(percentile(&l.itl, 50.0)),
                    ms(percentile(&l.itl, 99.0)),
                );
            }
        }
        OutputFormat::Json => {
            let rows: Vec<Value> = levels
                .iter()
                .map(|l| {
                    json!({
                        "model": model,
                        "concurrency": l.concurrency,
                        "requests": l.requests,
                        "max_tokens": a.max_tokens,
                        "tokens": l.tokens,
                        "seconds": l.secs,
                        "tokens_per_second": l.tokens as f64 / l.secs,
                        "ttft_p50_s": percentile(&l.ttft, 50.0),
                        "ttft_p99_s": percentile(&l.ttft, 99.0),
                        "itl_p50_s": percentile(&l.itl, 50.0),
                        "itl_p99_s": percentile(&l.itl, 99.0),
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
