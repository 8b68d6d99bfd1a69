//! The inspection and scoring commands: info, tokenize, render, logits, perplexity.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use engine::{KvType, ModelFormat, Session};
use tokenizer::EncodeOptions;

use crate::commands::{need_tokenizer, parse_ids, TokenizeArgs};

pub fn info(path: &Path, tokenizer: Option<&Path>) -> Result<()> {
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

/// The tokenizer of a model path, or a tokenizer file or directory given on its own.
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

pub fn tokenize(a: TokenizeArgs) -> Result<()> {
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
    let opts = EncodeOptions {
        add_bos: a.bos,
        parse_special: a.special,
        ..EncodeOptions::default()
    };
    println!("{}", serde_json::to_string(&tok.encode_with(&text, opts))?);
    Ok(())
}

pub fn render(path: &Path, messages: &Path, add_generation_prompt: bool) -> Result<()> {
    let tok = tokenizer_for(path)?;
    let at = match engine::detect_format(path) {
        Ok((_, at)) => at,
        Err(_) => path.to_path_buf(),
    };
    let settings = engine::chat_settings(&at, tok.as_ref())?;
    let text =
        std::fs::read_to_string(messages).with_context(|| format!("{}", messages.display()))?;
    let json: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", messages.display()))?;
    let shape_err = || {
        anyhow::anyhow!(
            "{}: expected an array of messages or an object with \"messages\"",
            messages.display()
        )
    };
    let (list, mut rest) = match json {
        Value::Array(list) => (list, serde_json::Map::new()),
        Value::Object(mut o) => match o.remove("messages") {
            Some(Value::Array(list)) => (list, o),
            _ => return Err(shape_err()),
        },
        _ => return Err(shape_err()),
    };
    let mut ctx = settings.context(list, add_generation_prompt);
    // "tools" and any other key become template variables, as keyword arguments of
    // transformers' apply_chat_template do.
    ctx.tools = rest.remove("tools").filter(|t| !t.is_null());
    ctx.extra = rest;
    let rendered = settings.template.render(&ctx)?;
    let mut out = std::io::stdout().lock();
    out.write_all(rendered.as_bytes())?;
    out.flush()?;
    Ok(())
}

pub fn logits(path: &Path, ids: &str, out: &Path, kv_type: KvType) -> Result<()> {
    let ids = parse_ids(ids)?;
    if ids.is_empty() {
        bail!("--ids is empty");
    }
    let model = engine::load_model(path)?.0;
    let mut session = Session::with_kv_type(&model, kv_type)?;
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

pub fn perplexity(
    path: &Path,
    file: &Path,
    ctx: usize,
    max_chunks: Option<usize>,
    tokenizer: Option<&Path>,
    kv_type: KvType,
) -> Result<()> {
    let loaded = engine::load(path, tokenizer)?;
    let tok = need_tokenizer(&loaded)?;
    let bos = tok.bos().context("the tokenizer has no BOS token")?;
    let text = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
    let ids = tok.encode(&text, false);
    eprintln!("{}: {} tokens", file.display(), ids.len());
    let r = engine::perplexity(&loaded.model, &ids, bos, ctx, max_chunks, kv_type)?;
    println!(
        "perplexity: {:.6}  mean_nll: {:.6}  tokens: {}",
        r.perplexity, r.mean_nll, r.n_tokens
    );
    Ok(())
}
