//! `herd quantize IN OUT --type T`: any model herd loads, written as a GGUF file.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use engine::{QuantType, QuantizeEvent};

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// Model file or directory (GGUF, Hugging Face, llama2.c .bin, Meta .pth).
    pub input: PathBuf,
    /// GGUF file to write (written as OUT.tmp, then renamed).
    pub output: PathBuf,
    /// Weight type: f32, f16, bf16, q8_0, q4_0, q6_k, q5_k, q4_k, q3_k (every matrix that
    /// type), or llama.cpp's mixes q5_k_m, q5_k_s, q4_k_m, q4_k_s, q3_k_m, q2_k.
    #[arg(long = "type", short = 'q')]
    pub ty: String,
    /// Tokenizer to embed (tokenizer.model, tokenizer.json, tokenizer.bin, a GGUF file, or a
    /// directory), when the model carries none or another is wanted.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

pub fn run(a: QuantizeArgs) -> Result<()> {
    let q = QuantType::parse(&a.ty)?;
    let bar = ProgressBar::hidden();
    let mut on_event = |e: QuantizeEvent| match e {
        QuantizeEvent::Start { total_bytes, .. } => {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar.set_length(total_bytes);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {elapsed_precise} {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
        }
        QuantizeEvent::Note(n) => bar.suspend(|| eprintln!("note: {n}")),
        QuantizeEvent::Wrote {
            name, ty, bytes, ..
        } => {
            bar.set_message(format!("{name} {ty:?}"));
            bar.inc(bytes);
        }
    };
    let report = engine::quantize(
        &a.input,
        &a.output,
        q,
        a.tokenizer.as_deref(),
        &mut on_event,
    )?;
    bar.finish_and_clear();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for t in &report.tensors {
        let name = format!("{:?}", t.ty);
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => counts.push((name, 1)),
        }
    }
    let types: Vec<String> = counts.iter().map(|(n, c)| format!("{c} {n}")).collect();
    eprintln!(
        "wrote {} ({}, {:.2} MiB, {} tensors: {}) from {}{}",
        a.output.display(),
        q.name(),
        report.file_bytes as f64 / (1024.0 * 1024.0),
        report.tensors.len(),
        types.join(", "),
        report.format.name(),
        if report.has_tokenizer {
            ""
        } else {
            "; no tokenizer"
        }
    );
    Ok(())
}
