//! The `herd` binary end to end: outputs on the reference model, and one clear error line
//! (never a panic) on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn herd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// A failed run: non-zero exit, exactly one `error:` line on stderr containing `needle`.
fn assert_clean_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, stderr: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(lines[0].contains(needle), "'{needle}' not in: {err}");
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("herd-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn run_greedy_prints_reference_text() {
    let Some(d) = testdata::shared_data("run_greedy_prints_reference_text") else {
        return;
    };
    let expected = std::fs::read_to_string(d.join("expected/stories260K_greedy_n200.txt")).unwrap();
    let model = d.join("stories260K/stories260K.bin");
    let tok = d.join("stories260K/tok512.bin");
    let o = herd(&[
        "run",
        s(&model),
        "--tokenizer",
        s(&tok),
        "--temperature",
        "0",
        "--max-tokens",
        "200",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected);
    let err = stderr(&o);
    assert!(
        err.contains("prompt: 1 tokens") && err.contains("generated: 200 tokens"),
        "{err}"
    );
    // The GGUF file carries its own vocabulary.
    let gguf = d.join("stories260K/stories260K.gguf");
    let o = herd(&["run", s(&gguf), "--temperature", "0", "--max-tokens", "200"]);
    assert_eq!(stdout(&o), expected);
}

#[test]
fn run_with_prompt_does_not_echo_it_and_seed_repeats() {
    let Some(d) = testdata::shared_data("run_with_prompt_does_not_echo_it_and_seed_repeats") else {
        return;
    };
    let gguf = d.join("stories260K/stories260K.gguf");
    let args = [
        "run",
        s(&gguf),
        "--prompt",
        "Once upon a time",
        "--max-tokens",
        "30",
        "--seed",
        "7",
    ];
    let a = herd(&args);
    let b = herd(&args);
    assert!(a.status.success(), "{}", stderr(&a));
    assert_eq!(stdout(&a), stdout(&b));
    assert!(!stdout(&a).starts_with("Once upon a time"));
    let c = herd(&[
        "run",
        s(&gguf),
        "--prompt",
        "Once upon a time",
        "--max-tokens",
        "30",
        "--seed",
        "8",
    ]);
    assert_ne!(stdout(&a), stdout(&c));
}

#[test]
fn tokenize_and_decode() {
    let Some(d) = testdata::shared_data("tokenize_and_decode") else {
        return;
    };
    let tok = d.join("llama2-tokenizer/tokenizer.model");
    let o = herd(&[
        "tokenize",
        s(&tok),
        "--text",
        "I believe the meaning of life is",
        "--bos",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "[1,306,4658,278,6593,310,2834,338]");
    let o = herd(&[
        "tokenize",
        s(&tok),
        "--decode",
        "1 306 4658 278 6593 310 2834 338",
    ]);
    assert_eq!(stdout(&o), "I believe the meaning of life is");
    let o = herd(&["tokenize", s(&tok), "--decode", "1 99999"]);
    assert_clean_error(&o, "99999");
}

#[test]
fn logits_writes_npy() {
    let Some(d) = testdata::shared_data("logits_writes_npy") else {
        return;
    };
    let out = tmp_dir("logits").join("l.npy");
    let model = d.join("stories260K/stories260K_v1_ak42.bin");
    let o = herd(&[
        "logits",
        s(&model),
        "--ids",
        "1 403 407 261 378 432 383 286",
        "--out",
        s(&out),
        // The reference computed keys and values in f32.
        "--kv-type",
        "f32",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (shape, got) = formats::npy::read_f32(&out).unwrap();
    let (_, want) =
        formats::npy::read_f32(&d.join("expected/stories260K_logits_first8.npy")).unwrap();
    assert_eq!(shape, vec![8, 512]);
    let err = testdata::max_abs_diff(&got, &want);
    std::fs::remove_dir_all(out.parent().unwrap()).ok();
    assert!(err <= 1e-4, "max abs error {err}");
    std::fs::remove_file(&out).ok();
}

#[test]
fn perplexity_last_line() {
    let Some(d) = testdata::shared_data("perplexity_last_line") else {
        return;
    };
    let model = d.join("stories260K/stories260K.bin");
    let tok = d.join("stories260K/tok512.model");
    let text = d.join("corpora/tinystories-valid-head.txt");
    let o = herd(&[
        "perplexity",
        s(&model),
        "--tokenizer",
        s(&tok),
        "--file",
        s(&text),
        "--ctx",
        "512",
        "--max-chunks",
        "20",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let last = out.lines().last().unwrap();
    let fields: Vec<&str> = last.split_whitespace().collect();
    assert_eq!(fields[0], "perplexity:");
    assert_eq!(fields[2], "mean_nll:");
    assert_eq!(&fields[4..], ["tokens:", "10220"]);
    let ppl: f64 = fields[1].parse().unwrap();
    assert!((ppl - 4.2059).abs() <= 0.0005, "{last}");
}

#[test]
fn info_describes_model() {
    let Some(d) = testdata::shared_data("info_describes_model") else {
        return;
    };
    let o = herd(&["info", s(&d.join("stories260K/stories260K.gguf"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in [
        "GGUF",
        "llama",
        "F32",
        "context:       2048",
        "vocabulary:    512",
        "kv heads 4",
    ] {
        assert!(out.contains(needle), "'{needle}' not in:\n{out}");
    }
}

#[test]
fn info_on_fixture_without_shared_data() {
    let dir = testdata::fixtures().join("hf/gqa");
    let o = herd(&["info", s(&dir)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Hugging Face"));
}

#[test]
fn missing_path_is_one_error_line() {
    let o = herd(&["run", "/no/such/model.gguf", "--prompt", "hi"]);
    assert_clean_error(&o, "/no/such/model.gguf");
}

#[test]
fn unknown_architecture_is_named() {
    let dir = tmp_dir("arch");
    std::fs::write(
        dir.join("config.json"),
        r#"{"architectures": ["GPT2LMHeadModel"], "n_embd": 8}"#,
    )
    .unwrap();
    let o = herd(&["info", s(&dir)]);
    assert_clean_error(&o, "GPT2LMHeadModel");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn prompt_longer_than_context_is_refused() {
    let Some(d) = testdata::shared_data("prompt_longer_than_context_is_refused") else {
        return;
    };
    let model = d.join("stories260K/stories260K.bin");
    let tok = d.join("stories260K/tok512.bin");
    let prompt = "Once upon a time there was a dog. ".repeat(100);
    let o = herd(&[
        "run",
        s(&model),
        "--tokenizer",
        s(&tok),
        "--prompt",
        &prompt,
    ]);
    assert_clean_error(&o, "context of 512");
}

#[test]
fn token_id_out_of_range_is_refused() {
    let dir = testdata::fixtures().join("hf/mha");
    let out = tmp_dir("oob").join("x.npy");
    let o = herd(&["logits", s(&dir), "--ids", "1 2 64", "--out", s(&out)]);
    assert_clean_error(&o, "token id 64");
    let o = herd(&["logits", s(&dir), "--ids", "1 two", "--out", s(&out)]);
    std::fs::remove_dir_all(out.parent().unwrap()).ok();
    assert_clean_error(&o, "'two'");
}

#[test]
fn truncated_model_file_is_refused() {
    let Some(d) = testdata::shared_data("truncated_model_file_is_refused") else {
        return;
    };
    let dir = tmp_dir("trunc");
    for name in [
        "stories260K.bin",
        "stories260K_v1_ak42.bin",
        "stories260K.gguf",
    ] {
        let bytes = std::fs::read(d.join("stories260K").join(name)).unwrap();
        let cut = dir.join(name);
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let o = herd(&["info", s(&cut)]);
        assert_clean_error(&o, name);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_sampling_settings_are_refused() {
    let dir = testdata::fixtures().join("hf/mha");
    let o = herd(&["run", s(&dir), "--top-p", "1.5"]);
    assert_clean_error(&o, "top-p");
}
