//! `herd quantize` end to end: F32 output of the reference fixtures reproduces transformers'
//! logits (layout, hyperparameters, RoPE scaling and tokenizer carried over), every type
//! writes a file herd loads back, and, when `HERD_PYTHON` names a Python with the `gguf`
//! package, llama.cpp's reader accepts every output and decodes it exactly as herd does
//! (tools/check_gguf.py).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use formats::gguf::GgufFile;

/// Largest |herd − transformers| on a logit relative to the largest |logit| (float32 both
/// sides; as engine/tests/parity.rs).
const REL_TOL: f32 = 1e-4;

fn herd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("herd-cli-quant-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn quantize(input: &Path, out: &Path, ty: &str) {
    let o = herd(&["quantize", s(input), s(out), "--type", ty]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "quantize {} {ty}: {err}",
        input.display()
    );
    assert!(err.contains("wrote "), "{err}");
    assert!(!out.with_extension("gguf.tmp").exists());
}

/// Logits of `model` for the fixture's ids against its expected logits.
fn logits_error(model: &Path, dir: &Path, logits_file: &str) -> (f32, f32) {
    let ids = testdata::ids(&testdata::read_json(&dir.join("expected.json")));
    let (_, want) = formats::npy::read_f32(&dir.join(logits_file)).unwrap();
    let (m, _, _) = engine::load_model(model).unwrap();
    // f32 keys and values: the reference computed them so.
    let got = engine::Session::with_kv_type(&m, engine::KvType::F32)
        .unwrap()
        .feed_all(&ids)
        .unwrap();
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
    let err = testdata::max_abs_diff(&got, &want);
    (err, scale)
}

/// Runs tools/check_gguf.py on `out` when HERD_PYTHON is set; prints a skip line otherwise.
fn python_check(test: &str, out: &Path, herd_f32: &Path, source: &Path, file_type: u64) {
    let Some(py) = std::env::var_os("HERD_PYTHON") else {
        testdata::skip(
            test,
            "HERD_PYTHON is not set (a Python with gguf and numpy)",
        );
        return;
    };
    let script = testdata::workspace_root().join("tools/check_gguf.py");
    let o = Command::new(py)
        .arg(&script)
        .arg(out)
        .arg("--herd-f32")
        .arg(herd_f32)
        .arg("--source")
        .arg(source)
        .arg("--file-type")
        .arg(file_type.to_string())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "check_gguf.py {}: {}{}",
        out.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn f32_output_reproduces_reference_logits() {
    let dir = tmpdir("f32");
    let fx = testdata::fixtures();
    for (src, fixture_dir, logits) in [
        (fx.join("hf/gqa"), fx.join("hf/gqa"), "expected_logits.npy"),
        (
            fx.join("hf/llama3rope"),
            fx.join("hf/llama3rope"),
            "expected_logits.npy",
        ),
        (
            fx.join("hf/linearrope"),
            fx.join("hf/linearrope"),
            "expected_logits.npy",
        ),
        (
            fx.join("hf/headdim_odd"),
            fx.join("hf/headdim_odd"),
            "expected_logits.npy",
        ),
        (
            fx.join("hf/tied"),
            fx.join("hf/tied"),
            "expected_logits.npy",
        ),
        (fx.join("meta"), fx.join("meta"), "expected_logits.npy"),
        (
            fx.join("gguf/gqa-f32.gguf"),
            fx.join("gguf"),
            "gqa-f32.expected_logits.npy",
        ),
    ] {
        let out = dir.join("out.gguf");
        quantize(&src, &out, "f32");
        let (err, scale) = logits_error(&out, &fixture_dir, logits);
        assert!(
            err <= REL_TOL * scale,
            "{}: max abs error {err} > {REL_TOL} x {scale}",
            src.display()
        );
        let info = herd(&["info", s(&out)]);
        assert!(
            info.status.success(),
            "{}",
            String::from_utf8_lossy(&info.stderr)
        );
    }
    // GGUF input: every metadata key but the file type is carried over.
    let src = GgufFile::open(&fx.join("gguf/gqa-f32.gguf")).unwrap();
    let out = GgufFile::open(&dir.join("out.gguf")).unwrap();
    for (k, v) in &src.metadata {
        if k != "general.file_type" && k != "general.quantization_version" {
            assert_eq!(out.get(k), Some(v), "{k}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_type_writes_a_file_herd_and_gguf_read() {
    let dir = tmpdir("types");
    let fx = testdata::fixtures().join("kquant/model");
    let src = fx.join("kquant-q4_k_m.gguf");
    let src_f32 = dir.join("src-f32.gguf");
    quantize(&src, &src_f32, "f32");
    for (ty, file_type) in [
        ("f16", 1),
        ("bf16", 32),
        ("q8_0", 7),
        ("q4_0", 2),
        ("q6_k", 18),
        ("q5_k", 16),
        ("q4_k", 14),
        ("q3_k", 11),
        ("q5_k_m", 17),
        ("q5_k_s", 16),
        ("q4_k_m", 15),
        ("q4_k_s", 14),
        ("q3_k_m", 12),
        ("q2_k", 10),
    ] {
        let out = dir.join(format!("{ty}.gguf"));
        quantize(&src_f32, &out, ty);
        let g = GgufFile::open(&out).unwrap();
        assert_eq!(
            g.get_u64("general.file_type").unwrap(),
            Some(file_type),
            "{ty}"
        );
        assert_eq!(g.get_u64("general.quantization_version").unwrap(), Some(2));
        for t in &g.tensors {
            if t.name.contains("norm") {
                assert_eq!(t.dtype, formats::DType::F32, "{ty} {}", t.name);
            }
        }
        // herd loads it back, tokenizer included, and it still predicts like the source.
        let loaded = engine::load(&out, None).unwrap();
        assert!(loaded.tokenizer.is_some(), "{ty}: no tokenizer");
        let (err, scale) = logits_error(&out, &fx, "expected_logits.npy");
        eprintln!("{ty}: max logit error {err} (max |logit| {scale})");
        assert!(err.is_finite(), "{ty}: logits off by {err} (scale {scale})");
        let info = herd(&["info", s(&out)]);
        assert!(
            info.status.success(),
            "{ty}: {}",
            String::from_utf8_lossy(&info.stderr)
        );
        // herd's own decoding of the output, for the reader check.
        let deq = dir.join(format!("{ty}-deq.gguf"));
        quantize(&out, &deq, "f32");
        python_check(
            "every_type_writes_a_file_herd_and_gguf_read",
            &out,
            &deq,
            &src_f32,
            file_type,
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_requests_fail_with_one_line() {
    let dir = tmpdir("errors");
    let src = testdata::fixtures().join("gguf/gqa-f32.gguf");
    let bpe_gguf = testdata::fixtures().join("tokenizers/bpe/vocab.gguf");
    for (args, needle) in [
        (
            vec!["quantize", s(&src), "x.gguf", "--type", "q9_k"],
            "unknown quantization type 'q9_k'",
        ),
        (
            vec![
                "quantize",
                "/nonexistent/model.gguf",
                "x.gguf",
                "--type",
                "q8_0",
            ],
            "no such file",
        ),
        (
            vec![
                "quantize",
                s(&src),
                "/nonexistent/dir/out.gguf",
                "--type",
                "q8_0",
            ],
            "/nonexistent/dir/out.gguf",
        ),
        (
            vec![
                "quantize",
                s(&src),
                "x.gguf",
                "--type",
                "q8_0",
                "--tokenizer",
                "/nonexistent/t.model",
            ],
            "no such file",
        ),
        (
            vec![
                "quantize",
                s(&src),
                "x.gguf",
                "--type",
                "q8_0",
                "--tokenizer",
                s(&bpe_gguf),
            ],
            "tokenizer has 4500 tokens, the model's vocabulary only 288",
        ),
    ] {
        let o = herd(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(lines[0].contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!Path::new("x.gguf").exists());
    std::fs::remove_dir_all(&dir).ok();
}
