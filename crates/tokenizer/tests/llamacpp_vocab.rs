//! llama.cpp's tokenizer test set for the Llama SPM vocabulary, run with Llama 2's
//! tokenizer.model (the same vocabulary).

use std::path::Path;

use tokenizer::SpmTokenizer;

/// Splits a `.inp` file the way llama.cpp's harness does: cases end at
/// `"\n__ggml_vocab_test__\n"`, so the newline before each separator is not part of a case.
fn cases(inp: &str) -> Vec<&str> {
    const SEP: &str = "\n__ggml_vocab_test__\n";
    let mut out = Vec::new();
    let mut rest = inp;
    while let Some(pos) = rest.find(SEP) {
        out.push(&rest[..pos]);
        rest = &rest[pos + SEP.len()..];
    }
    out
}

fn run(data: &Path, inp: &str, out: &str) -> usize {
    let tok = SpmTokenizer::from_model_file(data.join("llama2-tokenizer/tokenizer.model")).unwrap();
    let dir = data.join("llamacpp-vocab");
    let inp = std::fs::read_to_string(dir.join(inp)).unwrap();
    let out = std::fs::read_to_string(dir.join(out)).unwrap();
    let inputs = cases(&inp);
    let expected: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(inputs.len(), expected.len());
    let mut failures = Vec::new();
    for (text, want) in inputs.iter().zip(&expected) {
        let got = tok.encode(text, false);
        if &got != want {
            failures.push(format!("{text:?}\n  want {want:?}\n  got  {got:?}"));
        }
        assert_eq!(tok.decode(&got).unwrap(), *text, "roundtrip of {text:?}");
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    inputs.len()
}

#[test]
fn llama_spm_vocab_cases() {
    let Some(data) = testdata::shared_data("llama_spm_vocab_cases") else {
        return;
    };
    assert_eq!(
        run(
            &data,
            "ggml-vocab-llama-spm.gguf.inp",
            "ggml-vocab-llama-spm.gguf.out"
        ),
        46
    );
}

#[test]
fn llama_spm_vocab_cases_newer() {
    let Some(data) = testdata::shared_data("llama_spm_vocab_cases_newer") else {
        return;
    };
    assert_eq!(
        run(
            &data,
            "ggml-vocab-llama-spm.gguf.inp.newer",
            "ggml-vocab-llama-spm.gguf.out.newer"
        ),
        46
    );
}
