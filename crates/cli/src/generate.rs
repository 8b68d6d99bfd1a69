//! `herd run` and `herd chat`: generation with text streamed to stdout as it is produced.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Result};

use engine::{ChatRunner, GenerateStats, KvType, Sampler, Session};
use tokenizer::{EncodeOptions, StreamDecoder};

use crate::commands::{need_tokenizer, ChatArgs, RunArgs};

/// Streams text to stdout, flushing each piece. A closed pipe (`| head`) ends output quietly.
struct Out {
    closed: bool,
}

impl Out {
    fn new() -> Self {
        Out { closed: false }
    }
    /// Writes `s`; false once stdout is gone.
    fn write(&mut self, s: &str) -> Result<bool> {
        if self.closed {
            return Ok(false);
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(false)
            }
            Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
        }
    }
}

fn summary(stats: &GenerateStats, n_reused: Option<usize>) {
    let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    let reused = n_reused
        .map(|n| format!(" ({n} reused from the cache)"))
        .unwrap_or_default();
    // The one-off repacking of the weights before the first decode step, apart from the rate.
    let repacked = if stats.repack_secs >= 0.01 {
        format!(
            ", not counting {:.2} s of repacking the weights for this CPU's kernels after the \
             first token",
            stats.repack_secs
        )
    } else {
        String::new()
    };
    eprintln!(
        "\nprompt: {} tokens{reused} ({:.1} t/s), generated: {} tokens ({:.1} t/s{repacked}), stop: {:?}",
        stats.n_prompt,
        rate(stats.n_prompt, stats.prompt_secs),
        stats.n_generated,
        rate(stats.n_generated.saturating_sub(1).max(1), stats.gen_secs),
        stats.stop
    );
}

pub fn run(a: RunArgs, kv_type: KvType) -> Result<()> {
    let sampling = a.sampling.config()?;
    let loaded = engine::load(&a.model, a.sampling.tokenizer.as_deref())?;
    let tok = need_tokenizer(&loaded)?;
    let text = a.prompt.unwrap_or_default();
    let mut sampler = Sampler::new(sampling);
    let mut out = Out::new();
    if a.chat {
        let settings = engine::chat_settings(&loaded.path, tok)?;
        let mut runner = ChatRunner::new(&loaded.model, tok, settings, a.system, kv_type)?;
        let mut write_err = None;
        let (_, stats) = runner.reply(
            &text,
            a.sampling.max_tokens,
            &mut sampler,
            |piece| match out.write(piece) {
                Ok(open) => open,
                Err(e) => {
                    write_err = Some(e);
                    false
                }
            },
        )?;
        if let Some(e) = write_err {
            return Err(e);
        }
        summary(&stats.generate, None);
        return Ok(());
    }
    let add_bos = engine::prompt_add_bos(&loaded.path, tok)?;
    let mut prompt = tok.encode_with(
        &text,
        EncodeOptions {
            add_bos,
            ..EncodeOptions::default()
        },
    );
    if prompt.is_empty() {
        match tok.bos() {
            Some(bos) => prompt.push(bos),
            None => bail!(
                "the prompt is empty and the tokenizer has no BOS token: nothing to start from"
            ),
        }
    }
    let n_ctx = loaded.model.config.max_seq_len;
    if prompt.len() > n_ctx {
        bail!(
            "the prompt is {} tokens, longer than the context of {n_ctx}",
            prompt.len()
        );
    }
    let mut session = Session::with_kv_type(&loaded.model, kv_type)?;
    let mut decoder = if text.is_empty() {
        StreamDecoder::new()
    } else {
        StreamDecoder::continuing()
    };
    let mut failure = None;
    let stats = session.generate(
        &prompt,
        a.sampling.max_tokens,
        &mut sampler,
        &engine::stop_ids(&loaded.path, tok)?,
        |id| match decoder
            .push(tok, id)
            .map_err(anyhow::Error::from)
            .and_then(|s| out.write(&s))
        {
            Ok(open) => open,
            Err(e) => {
                failure = Some(e);
                false
            }
        },
    )?;
    if let Some(e) = failure {
        return Err(e);
    }
    out.write(&decoder.finish())?;
    summary(&stats, None);
    Ok(())
}

/// Set by Ctrl-C while a reply is being generated; the reply stops at the next token.
static STOP_REPLY: AtomicBool = AtomicBool::new(false);
/// Whether a reply is being generated (Ctrl-C outside a reply ends the program).
static GENERATING: AtomicBool = AtomicBool::new(false);

pub fn chat(a: ChatArgs, kv_type: KvType) -> Result<()> {
    let sampling = a.sampling.config()?;
    let loaded = engine::load(&a.model, a.sampling.tokenizer.as_deref())?;
    let tok = need_tokenizer(&loaded)?;
    let settings = engine::chat_settings(&loaded.path, tok)?;
    ctrlc::set_handler(|| {
        if GENERATING.load(Ordering::SeqCst) {
            STOP_REPLY.store(true, Ordering::SeqCst);
        } else {
            eprintln!();
            std::process::exit(130);
        }
    })?;
    let mut runner = ChatRunner::new(&loaded.model, tok, settings, a.system, kv_type)?;
    let mut sampler = Sampler::new(sampling);
    let mut out = Out::new();
    eprintln!(
        "chat with {} (/reset starts over, /exit or Ctrl-D quits, Ctrl-C stops a reply)",
        loaded.path.display()
    );
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        eprint!("> ");
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            eprintln!();
            return Ok(());
        }
        let input = line.trim_end_matches(['\n', '\r']);
        match input.trim() {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/reset" => {
                runner.reset();
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        STOP_REPLY.store(false, Ordering::SeqCst);
        GENERATING.store(true, Ordering::SeqCst);
        let mut write_err = None;
        let result = runner.reply(input, a.sampling.max_tokens, &mut sampler, |piece| {
            if STOP_REPLY.load(Ordering::SeqCst) {
                return false;
            }
            match out.write(piece) {
                Ok(open) => open,
                Err(e) => {
                    write_err = Some(e);
                    false
                }
            }
        });
        GENERATING.store(false, Ordering::SeqCst);
        if let Some(e) = write_err {
            return Err(e);
        }
        match result {
            Ok((_, stats)) => summary(&stats.generate, Some(stats.n_reused)),
            // A turn that cannot run (too long, template refuses) is reported; the chat goes on.
            Err(e) => eprintln!("error: {e}"),
        }
    }
}
