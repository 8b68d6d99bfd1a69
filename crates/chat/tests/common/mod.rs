//! Shared helpers: reading `tests/fixtures/chat/expected.json` and checking outcomes.

#![allow(dead_code)]

use std::path::PathBuf;

use chat::{ChatError, ChatTemplate, RenderContext, STRFTIME_NOW_FIXED};
use serde_json::{Map, Value};

/// The fixture document.
pub fn expected() -> Value {
    let path = fixtures_dir().join("expected.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `tests/fixtures/chat`.
pub fn fixtures_dir() -> PathBuf {
    testdata::fixtures().join("chat")
}

/// One rendering of the fixture: its name, what to render, what transformers gave.
pub struct Case {
    pub name: String,
    pub ctx: RenderContext,
    pub expected: Value,
}

/// The cases of one template, with the context built as the fixture script built it.
pub fn cases_of(doc: &Value, template: &str) -> Vec<Case> {
    let info = &doc["templates"][template];
    let mut out = Vec::new();
    for case in doc["cases"].as_array().expect("cases") {
        if case["template"] != template {
            continue;
        }
        let conv_name = case["conversation"].as_str().expect("conversation");
        let conv = &doc["conversations"][conv_name];
        let mut extra: Map<String, Value> = case["extra"].as_object().cloned().unwrap_or_default();
        let mut name = conv_name.to_string();
        if !extra.is_empty() {
            let keys: Vec<&str> = extra.keys().map(String::as_str).collect();
            name = format!("{name} +{}", keys.join("+"));
        }
        if let Some(now) = case.get("fixed_now") {
            extra.insert(STRFTIME_NOW_FIXED.to_string(), now.clone());
            name = format!("{name} +strftime_now");
        }
        let ctx = RenderContext {
            messages: conv["messages"].as_array().cloned().expect("messages"),
            add_generation_prompt: conv["add_generation_prompt"].as_bool().expect("flag"),
            bos_token: info["bos_token"].as_str().expect("bos").to_string(),
            eos_token: info["eos_token"].as_str().expect("eos").to_string(),
            tools: Some(conv["tools"].clone()).filter(|t| !t.is_null()),
            extra,
        };
        out.push(Case {
            name,
            ctx,
            expected: case["expected"].clone(),
        });
    }
    out
}

/// Jinja2 errors that minijinja does not raise, by a part of Jinja2's message, and why.
/// A case expecting such an error may render instead; it is reported, not failed.
pub const KNOWN_LENIENT: &[(&str, &str)] = &[(
    "'NoneType' object is not iterable",
    "minijinja iterates over none as over an empty list; Jinja2 raises TypeError",
)];

/// The reason when `expected` is an error that minijinja knowingly does not raise and
/// `got` rendered.
pub fn known_lenient(got: &Result<String, ChatError>, expected: &Value) -> Option<&'static str> {
    let want = expected.get("error").and_then(Value::as_str)?;
    if got.is_err() {
        return None;
    }
    KNOWN_LENIENT
        .iter()
        .find(|(part, _)| want.contains(part))
        .map(|(_, why)| *why)
}

/// Compares one outcome with transformers'; `None` when they agree, else what differs.
pub fn mismatch(got: &Result<String, ChatError>, expected: &Value) -> Option<String> {
    if let Some(want) = expected.get("output").and_then(Value::as_str) {
        return match got {
            Ok(text) if text == want => None,
            Ok(text) => Some(format!(
                "rendered text differs\n  want: {want:?}\n  got:  {text:?}"
            )),
            Err(e) => Some(format!("want text {want:?}, got error: {e}")),
        };
    }
    if let Some(want) = expected.get("raised").and_then(Value::as_str) {
        return match got {
            Err(ChatError::Raised { msg, .. }) if msg == want => None,
            other => Some(format!("want raise_exception({want:?}), got {other:?}")),
        };
    }
    let want = expected.get("error").and_then(Value::as_str).unwrap_or("?");
    match got {
        Err(ChatError::Render { .. }) => None,
        other => Some(format!("want a render error like {want:?}, got {other:?}")),
    }
}

/// Checks every case; `known` lists (case name, reason) pairs expected to differ, which
/// must still differ (so the list cannot go stale). Panics with every failure at once.
pub fn check_all(label: &str, template: &ChatTemplate, cases: &[Case], known: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for case in cases {
        let got = template.render(&case.ctx);
        let diff = mismatch(&got, &case.expected);
        let known_reason = known
            .iter()
            .find(|(n, _)| *n == case.name)
            .map(|(_, r)| *r)
            .or_else(|| known_lenient(&got, &case.expected));
        match (diff, known_reason) {
            (None, None) => {}
            (Some(d), None) => failures.push(format!("{label} / {}: {d}", case.name)),
            (Some(_), Some(reason)) => {
                eprintln!("known difference: {label} / {}: {reason}", case.name)
            }
            (None, Some(_)) => failures.push(format!(
                "{label} / {}: listed as a known difference but now matches",
                case.name
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
