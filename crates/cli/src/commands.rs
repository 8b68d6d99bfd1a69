use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use engine::{Loaded, ModelFormat, Sampler, SamplerConfig, Session};
use tokenizer::{StreamDecoder, Tokenize};

/// herd: run Llama-family models on the CPU.
#[derive(Parser, Debug)]
#[command(name = "herd", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate text from a prompt; text streams to stdout, a summary line to stderr.
    Run(RunArgs),
    /// Describe a model: architecture, parameters, weight types, context, vocabulary, format.
    Info {
        /// Model file or directory.
        model: PathBuf,
        /// Tokenizer file, when the model carries none.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
    },
    /// Turn text into token ids (a JSON array), or ids into text with --decode.
    Tokenize(TokenizeArgs),
    /// Write float32 logits [n_ids, vocab] for every position of an id sequence to a .npy file.
    Logits {
        /// Model file or directory.
        model: PathBuf,
        /// Token ids, separated by spaces or commas.
        #[arg(long)]
        ids: String,
        /// Output .npy file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Perplexity of a text file, scored in non-overlapping windows.
    Perplexity {
        /// Model file or directory.
        model: PathBuf,
        /// Text file to score.
        #[arg(long)]
        file: PathBuf,
        /// Window length in tokens, BOS included.
        #[arg(long, default_value_t = 512)]
        ctx: usize,
        /// Score at most this many windows.
        #[arg(long)]
        max_chunks: Option<usize>,
        /// Tokenizer file, when the model carries none.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Model file or directory.
    model: PathBuf,
    /// Prompt text (encoded after BOS). Without one, generation starts from BOS alone.
    #[arg(long, short)]
    prompt: Option<String>,
    /// Most tokens to generate.
    #[arg(long, short = 'n', default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Keep only the K most likely tokens (0: all).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Nucleus sampling threshold (1: off).
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Drop tokens less likely than P times the most likely (0: off).
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Penalty for tokens among the last 64 (1: off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Random seed; the same seed and inputs give the same output. Default: from the clock.
    #[arg(long)]
    seed: Option<u64>,
    /// Tokenizer file (tokenizer.model or llama2.c tokenizer.bin), when the model carries none.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct TokenizeArgs {
    /// Model file or directory, or a tokenizer file (tokenizer.model, tokenizer.bin, GGUF).
    model: PathBuf,
    /// Text to encode.
    #[arg(long, conflicts_with_all = ["file", "decode"])]
    text: Option<String>,
    /// File whose text to encode.
    #[arg(long, conflicts_with = "decode")]
    file: Option<PathBuf>,
    /// Put BOS first.
    #[arg(long)]
    bos: bool,
    /// Decode these ids (separated by spaces or commas) instead.
    #[arg(long)]
    decode: Option<String>,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => run_generate(args),
        Command::Info { model, tokenizer } => info(&model, tokenizer.as_deref()),
        Command::Tokenize(args) => tokenize(args),
        Command::Logits { model, ids, out } => logits(&model, &ids, &out),
        Command::Perplexity {
            model,
            file,
            ctx,
            max_chunks,
            tokenizer,
        } => perplexity(&model, &file, ctx, max_chunks, tokenizer.as_deref()),
    }
}

fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<u32>()
                .with_context(|| format!("'{t}' is not a token id"))
        })
        .collect()
}

fn need_tokenizer<'a>(loaded: &'a Loaded) -> Result<&'a (dyn Tokenize + Send + Sync)> {
    match &loaded.tokenizer {
        Some(t) => Ok(t.as_ref()),
        None => bail!(
            "{}: the model carries no tokenizer; pass one with --tokenizer (tokenizer.model or tokenizer.bin)",
            loaded.path.display()
        ),
    }
}

fn run_generate(a: RunArgs) -> Result<()> {
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let sampling = SamplerConfig {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: a.min_p,
        repeat_penalty: a.repeat_penalty,
        repeat_last_n: 64,
        seed,
    };
    sampling.validate().map_err(anyhow::Error::msg)?;
    let loaded = engine::load(&a.model, a.tokenizer.as_deref())?;
    let tok = need_tokenizer(&loaded)?;
    let text = a.prompt.unwrap_or_default();
    let mut prompt = tok.encode(&text, true);
    if prompt.is_empty() {
        bail!("the tokenizer has no BOS token and the prompt is empty: nothing to start from");
    }
    if tok.bos().is_none() && prompt.is_empty() {
        prompt.push(0);
    }
    let n_ctx = loaded.model.config.max_seq_len;
    if prompt.len() > n_ctx {
        bail!(
            "the prompt is {} tokens, longer than the context of {n_ctx}",
            prompt.len()
        );
    }
    let mut session = Session::new(&loaded.model);
    let mut sampler = Sampler::new(sampling);
    let mut decoder = if text.is_empty() {
        StreamDecoder::new()
    } else {
        StreamDecoder::continuing()
    };
    let stop_ids: Vec<u32> = tok.eos().into_iter().collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut io_err = None;
    let mut decode_err = None;
    let stats = session.generate(
        &prompt,
        a.max_tokens,
        &mut sampler,
        &stop_ids,
        |id| match decoder.push(tok, id) {
            Ok(s) => {
                if let Err(e) = out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
                    io_err = Some(e);
                    return false;
                }
                true
            }
            Err(e) => {
                decode_err = Some(e);
                false
            }
        },
    )?;
    if let Some(e) = decode_err {
        return Err(e.into());
    }
    let tail = decoder.finish();
    if io_err.is_none() {
        if let Err(e) = out.write_all(tail.as_bytes()).and_then(|_| out.flush()) {
            io_err = Some(e);
        }
    }
    if let Some(e) = io_err {
        // A closed pipe (e.g. `| head`) is not an error of generation.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(anyhow::Error::new(e).context("writing to stdout"));
        }
    }
    let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    eprintln!(
        "\nprompt: {} tokens ({:.1} t/s), generated: {} tokens ({:.1} t/s), stop: {:?}",
        stats.n_prompt,
        rate(stats.n_prompt, stats.prompt_secs),
        stats.n_generated,
        rate(stats.n_generated.saturating_sub(1).max(1), stats.gen_secs),
        stats.stop
    );
    Ok(())
}

fn info(path: &Path, tokenizer: Option<&Path>) -> Result<()> {
    let loaded = engine::load(path, tokenizer)?;
    let m = &loaded.model;
    let c = &m.config;
    let mut types: Vec<(String, usize)> = Vec::new();
    let mut count = |t: String| match types.iter_mut().find(|(n, _)| *n == t) {
        Some((_, k)) => *k += 1,
        None => types.push((t, 1)),
    };
    count(format!("{:?}", m.tok_embeddings.ty));
    for l in &m.layers {
        for w in [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_down, &l.w_up] {
            count(format!("{:?}", w.ty));
        }
    }
    if !c.tied_embeddings {
        count(format!("{:?}", m.output.ty));
    }
    let types: Vec<String> = types.iter().map(|(t, n)| format!("{t} x{n}")).collect();
    println!("format:        {}", loaded.format.name());
    println!("path:          {}", loaded.path.display());
    println!("architecture:  llama");
    println!(
        "parameters:    {} ({:.2} M)",
        c.n_params(),
        c.n_params() as f64 / 1e6
    );
    println!("weight types:  {}", types.join(", "));
    println!("context:       {}", c.max_seq_len);
    println!("vocabulary:    {}", c.vocab_size);
    println!(
        "dims:          dim {}, layers {}, heads {}, kv heads {}, head dim {}, ffn {}",
        c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.hidden_dim
    );
    println!(
        "rope:          theta {}, scaling {:?}; rms eps {}; tied embeddings {}",
        c.rope_theta, c.rope_scaling, c.norm_eps, c.tied_embeddings
    );
    match (&loaded.tokenizer, &loaded.tokenizer_source) {
        (Some(t), Some(src)) => println!(
            "tokenizer:     {} tokens, bos {:?}, eos {:?} (from {src})",
            t.vocab_size(),
            t.bos(),
            t.eos()
        ),
        _ => println!("tokenizer:     none (pass --tokenizer)"),
    }
    Ok(())
}

/// The tokenizer of a model path, or a tokenizer file given on its own.
fn tokenizer_for(path: &Path) -> Result<engine::TokenizerBox> {
    match engine::detect_format(path) {
        Ok((ModelFormat::Llama2c, _)) => bail!(
            "{}: a llama2.c checkpoint carries no tokenizer; pass tokenizer.bin or tokenizer.model instead",
            path.display()
        ),
        Ok((ModelFormat::HfSafetensors | ModelFormat::MetaPth, dir)) => Ok(engine::load_tokenizer(&dir, None)?),
        _ => Ok(engine::load_tokenizer(path, None)?),
    }
}

fn tokenize(a: TokenizeArgs) -> Result<()> {
    let tok = tokenizer_for(&a.model)?;
    if let Some(ids) = a.decode {
        let ids = parse_ids(&ids)?;
        let text = tok.decode(&ids)?;
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        return Ok(());
    }
    let text = match (a.text, a.file) {
        (Some(t), _) => t,
        (None, Some(f)) => {
            std::fs::read_to_string(&f).with_context(|| format!("{}", f.display()))?
        }
        (None, None) => bail!("give --text, --file or --decode"),
    };
    let ids = tok.encode(&text, a.bos);
    println!("{}", serde_json::to_string(&ids)?);
    Ok(())
}

fn logits(path: &Path, ids: &str, out: &Path) -> Result<()> {
    let ids = parse_ids(ids)?;
    if ids.is_empty() {
        bail!("--ids is empty");
    }
    let model = engine::load_model(path)?.0;
    let mut session = Session::new(&model);
    let logits = session.feed_all(&ids)?;
    formats::npy::write_f32(out, &[ids.len(), model.config.vocab_size], &logits)?;
    eprintln!(
        "wrote {} x {} logits to {}",
        ids.len(),
        model.config.vocab_size,
        out.display()
    );
    Ok(())
}

fn perplexity(
    path: &Path,
    file: &Path,
    ctx: usize,
    max_chunks: Option<usize>,
    tokenizer: Option<&Path>,
) -> Result<()> {
    let loaded = engine::load(path, tokenizer)?;
    let tok = need_tokenizer(&loaded)?;
    let bos = tok.bos().context("the tokenizer has no BOS token")?;
    let text = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
    let ids = tok.encode(&text, false);
    eprintln!("{}: {} tokens", file.display(), ids.len());
    let r = engine::perplexity(&loaded.model, &ids, bos, ctx, max_chunks)?;
    println!(
        "perplexity: {:.6}  mean_nll: {:.6}  tokens: {}",
        r.perplexity, r.mean_nll, r.n_tokens
    );
    Ok(())
}
