//! The command line: arguments of every subcommand and the dispatch to their code.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use engine::{KvType, Loaded, SamplerConfig};
use tokenizer::Tokenize;

/// herd: run Llama-family models on the CPU.
#[derive(Parser, Debug)]
#[command(name = "herd", version, about)]
pub struct Cli {
    /// Worker threads for the model's kernels (default: one per physical core). `bench`
    /// takes a comma list and runs each count.
    #[arg(long, short = 't', global = true, value_delimiter = ',')]
    threads: Vec<usize>,
    /// How the KV cache stores keys and values: f16 (default), f32 or q8_0 (q8_0 needs a head
    /// size that is a multiple of 32).
    #[arg(long, global = true, default_value = "f16", value_parser = parse_kv_type)]
    kv_type: KvType,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate text from a prompt; text streams to stdout, a summary line to stderr.
    Run(RunArgs),
    /// Talk with a model in the terminal (/reset, /exit; Ctrl-C stops a reply).
    Chat(ChatArgs),
    /// Write a conversation rendered through the model's chat template to stdout.
    Render {
        /// Model file or directory, or a directory with tokenizer.json + tokenizer_config.json.
        model: PathBuf,
        /// JSON file: an array of messages, or an object with "messages", optional "tools",
        /// and any other template variables (e.g. "date_string").
        #[arg(long)]
        messages: PathBuf,
        /// Leave out the assistant header that invites a reply.
        #[arg(long)]
        no_generation_prompt: bool,
    },
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
    /// Measure prompt and generation throughput (llama-bench's method and table); `bench
    /// serve` loads a running server.
    Bench(crate::bench::BenchArgs),
    /// Write a model as a GGUF file of another weight type (llama.cpp's quantization types).
    Quantize(crate::quantize::QuantizeArgs),
    /// Serve the model over an OpenAI-compatible HTTP API with continuous batching.
    Serve(crate::serve::ServeArgs),
}

/// Sampling and length settings shared by `run` and `chat`.
#[derive(Args, Debug)]
pub struct SamplingArgs {
    /// Most tokens to generate.
    #[arg(long, short = 'n', default_value_t = 256)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Keep only the K most likely tokens (0: all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Nucleus sampling threshold (1: off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than P times the most likely (0: off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalty for tokens among the last 64 (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Random seed; the same seed and inputs give the same output. Default: from the clock.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Tokenizer file (tokenizer.json, tokenizer.model or tokenizer.bin), when the model
    /// carries none.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

impl SamplingArgs {
    pub fn config(&self) -> Result<SamplerConfig> {
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
        let c = SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: 64,
            seed,
        };
        c.validate().map_err(anyhow::Error::msg)?;
        Ok(c)
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Model file or directory.
    pub model: PathBuf,
    /// Prompt text (encoded after BOS). Without one, generation starts from BOS alone.
    #[arg(long, short)]
    pub prompt: Option<String>,
    /// Treat the prompt as one user turn of a chat, rendered through the chat template.
    #[arg(long)]
    pub chat: bool,
    /// System message for --chat.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

#[derive(Args, Debug)]
pub struct ChatArgs {
    /// Model file or directory.
    pub model: PathBuf,
    /// System message that opens the conversation.
    #[arg(long)]
    pub system: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// Model file or directory, or a tokenizer (tokenizer.json, tokenizer.model, tokenizer.bin,
    /// GGUF).
    pub model: PathBuf,
    /// Text to encode.
    #[arg(long, conflicts_with_all = ["file", "decode"])]
    pub text: Option<String>,
    /// File whose text to encode.
    #[arg(long, conflicts_with = "decode")]
    pub file: Option<PathBuf>,
    /// Put BOS first.
    #[arg(long)]
    pub bos: bool,
    /// Recognise special-token text (e.g. "<|eot_id|>") as those tokens.
    #[arg(long)]
    pub special: bool,
    /// Decode these ids (separated by spaces or commas) instead.
    #[arg(long)]
    pub decode: Option<String>,
}

pub fn run(cli: Cli) -> Result<()> {
    crate::threads::init(&cli.threads)?;
    match cli.command {
        Command::Run(args) => crate::generate::run(args, cli.kv_type),
        Command::Chat(args) => crate::generate::chat(args, cli.kv_type),
        Command::Render {
            model,
            messages,
            no_generation_prompt,
        } => crate::tools::render(&model, &messages, !no_generation_prompt),
        Command::Info { model, tokenizer } => crate::tools::info(&model, tokenizer.as_deref()),
        Command::Tokenize(args) => crate::tools::tokenize(args),
        Command::Logits { model, ids, out } => {
            crate::tools::logits(&model, &ids, &out, cli.kv_type)
        }
        Command::Perplexity {
            model,
            file,
            ctx,
            max_chunks,
            tokenizer,
        } => crate::tools::perplexity(
            &model,
            &file,
            ctx,
            max_chunks,
            tokenizer.as_deref(),
            cli.kv_type,
        ),
        Command::Bench(args) => crate::bench::run(args, &cli.threads, cli.kv_type),
        Command::Quantize(args) => crate::quantize::run(args),
        Command::Serve(args) => crate::serve::run(args, cli.kv_type),
    }
}

fn parse_kv_type(s: &str) -> std::result::Result<KvType, String> {
    KvType::from_name(s).ok_or_else(|| format!("'{s}' is not a KV cache type (f16, f32, q8_0)"))
}

pub fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<u32>()
                .with_context(|| format!("'{t}' is not a token id"))
        })
        .collect()
}

pub fn need_tokenizer(loaded: &Loaded) -> Result<&(dyn Tokenize + Send + Sync)> {
    match &loaded.tokenizer {
        Some(t) => Ok(t.as_ref()),
        None => anyhow::bail!(
            "{}: the model carries no tokenizer; pass one with --tokenizer (tokenizer.json, tokenizer.model or tokenizer.bin)",
            loaded.path.display()
        ),
    }
}
