//! The published chat templates in the shared reference data, against transformers'
//! rendering. Skipped (with a `skip:` line) when the reference data is absent.

mod common;

use chat::ChatTemplate;
use common::{cases_of, check_all, expected};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Compiles the shared template `name` of the fixture, checking it is the file rendered.
fn shared_template(doc: &Value, name: &str, test: &str) -> Option<ChatTemplate> {
    let dir = testdata::shared_data(test)?;
    let rel = doc["templates"][name]["path"].as_str().expect("path");
    let path = dir.join(rel);
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let sha: String = Sha256::digest(source.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        sha,
        doc["templates"][name]["sha256"].as_str().expect("sha256"),
        "{} is not the file the fixtures were rendered from",
        path.display()
    );
    let template =
        ChatTemplate::new(&source, &path.display().to_string()).unwrap_or_else(|e| panic!("{e}"));
    Some(template)
}

fn check_shared(name: &str, test: &str, known: &[(&str, &str)]) {
    let doc = expected();
    let Some(template) = shared_template(&doc, name, test) else {
        return;
    };
    let cases = cases_of(&doc, name);
    assert!(cases.len() >= 10, "only {} {name} cases", cases.len());
    check_all(name, &template, &cases, known);
}

#[test]
fn llama_3_1() {
    check_shared("llama-3.1", "llama_3_1", &[]);
}

#[test]
fn llama_3_2() {
    check_shared("llama-3.2", "llama_3_2", &[]);
}

#[test]
fn llama_3_3() {
    check_shared("llama-3.3", "llama_3_3", &[]);
}

#[test]
fn mistral_nemo() {
    check_shared("mistral-nemo", "mistral_nemo", &[]);
}

#[test]
fn deepseek_r1_distill_llama() {
    check_shared(
        "deepseek-r1-distill-llama",
        "deepseek_r1_distill_llama",
        &[],
    );
}

#[test]
fn hermes_3_tool_use() {
    check_shared("hermes-3-tool-use", "hermes_3_tool_use", &[]);
}
