//! The built-in Llama 2 / Llama 3 templates against transformers' rendering of the same
//! sources. Needs only the committed fixtures.

mod common;

use common::{cases_of, check_all, expected, fixtures_dir};

#[test]
fn builtin_sources_are_the_rendered_ones() {
    let llama2 =
        std::fs::read_to_string(fixtures_dir().join("llama2.jinja")).expect("llama2.jinja");
    let llama3 =
        std::fs::read_to_string(fixtures_dir().join("llama3.jinja")).expect("llama3.jinja");
    assert_eq!(chat::LLAMA2_SOURCE, llama2);
    assert_eq!(chat::LLAMA3_SOURCE, llama3);
    assert_eq!(chat::llama2().source(), llama2);
    assert_eq!(chat::llama3().source(), llama3);
}

#[test]
fn llama2_matches_transformers() {
    let doc = expected();
    let cases = cases_of(&doc, "llama2");
    assert!(cases.len() >= 10, "only {} llama2 cases", cases.len());
    check_all("llama2", &chat::llama2(), &cases, &[]);
}

#[test]
fn llama3_matches_transformers() {
    let doc = expected();
    let cases = cases_of(&doc, "llama3");
    assert!(cases.len() >= 10, "only {} llama3 cases", cases.len());
    check_all("llama3", &chat::llama3(), &cases, &[]);
}
