//! One-feature templates ("probes") against transformers' rendering: printing, `tojson`,
//! Python string methods, loops, scoping, whitespace control, undefined values, errors.

mod common;

use chat::{ChatTemplate, RenderContext};
use common::{expected, known_lenient, mismatch};
use serde_json::Map;

/// Probes where minijinja cannot do what Jinja2 does, and why.
const KNOWN: &[(&str, &str)] = &[
    ("print_tuple", "minijinja has no tuples: (1, 'a') is a list and prints as [1, 'a']"),
    ("dictsort", "dictsort gives lists of pairs, printed [['a', 1]] instead of [('a', 1)]"),
    ("string_percent", "minijinja has no printf-style '%' operator on strings"),
    (
        "tilde_float",
        "'~' writes floats with minijinja's Display: 1e20 as 100000000000000000000.0 (Python: 1e+20)",
    ),
];

#[test]
fn probes_match_transformers() {
    let doc = expected();
    let tokens = &doc["probe_tokens"];
    let mut extra = Map::new();
    extra.insert("data".to_string(), doc["probe_data"].clone());
    let mut failures = Vec::new();
    let probes = doc["probes"].as_array().expect("probes");
    for probe in probes {
        let name = probe["name"].as_str().expect("name");
        let source = probe["source"].as_str().expect("source");
        let ctx = RenderContext {
            messages: probe["messages"].as_array().cloned().expect("messages"),
            add_generation_prompt: true,
            bos_token: tokens["bos_token"].as_str().expect("bos").to_string(),
            eos_token: tokens["eos_token"].as_str().expect("eos").to_string(),
            tools: None,
            extra: extra.clone(),
        };
        let got = ChatTemplate::new(source, name).and_then(|t| t.render(&ctx));
        let diff = mismatch(&got, &probe["expected"]);
        let known = KNOWN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, why)| *why)
            .or_else(|| known_lenient(&got, &probe["expected"]));
        match (diff, known) {
            (None, None) => {}
            (Some(d), None) => failures.push(format!("{name}: {d}")),
            (Some(_), Some(why)) => eprintln!("known difference: {name}: {why}"),
            (None, Some(_)) => failures.push(format!("{name}: listed as known but matches")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} probes failed:\n{}",
        failures.len(),
        probes.len(),
        failures.join("\n")
    );
}

#[test]
fn probe_data_is_passed_in_order() {
    let doc = expected();
    let keys: Vec<&str> = doc["probe_data"]["dict"]
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys, ["z", "a", "m", "q"], "serde_json must keep key order");
}
