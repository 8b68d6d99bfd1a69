//! `herd render` against transformers' apply_chat_template, on the recorded cases of
//! tests/fixtures/chat/expected.json: every template (built-in and real published ones) over
//! every conversation, through a tokenizer directory (tokenizer.json + tokenizer_config.json)
//! as a user would hold it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

fn herd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(args)
        .output()
        .unwrap()
}

/// A directory with the byte-level test tokenizer and a tokenizer_config.json carrying
/// `template` and the family's special-token texts.
fn tokenizer_dir(name: &str, template: &str, bos: &str, eos: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herd-render-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = testdata::fixtures().join("tokenizers/bpe");
    std::fs::copy(fixtures.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let cfg = json!({"bos_token": bos, "eos_token": eos, "chat_template": template});
    std::fs::write(dir.join("tokenizer_config.json"), cfg.to_string()).unwrap();
    dir
}

fn template_source(entry: &Value, shared: Option<&Path>) -> Option<String> {
    let path = entry["path"].as_str().unwrap();
    match entry["where"].as_str().unwrap() {
        "builtin" => {
            Some(std::fs::read_to_string(testdata::fixtures().join("chat").join(path)).unwrap())
        }
        _ => shared.map(|d| std::fs::read_to_string(d.join(path)).unwrap()),
    }
}

#[test]
fn render_matches_transformers_on_every_case() {
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(testdata::fixtures().join("chat/expected.json")).unwrap(),
    )
    .unwrap();
    let shared =
        testdata::shared_data("render_matches_transformers_on_every_case (published templates)");
    let mut n_checked = 0;
    for (name, entry) in expected["templates"].as_object().unwrap() {
        let Some(source) = template_source(entry, shared.as_deref()) else {
            continue;
        };
        let dir = tokenizer_dir(
            name,
            &source,
            entry["bos_token"].as_str().unwrap(),
            entry["eos_token"].as_str().unwrap(),
        );
        for case in expected["cases"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["template"] == *name)
        {
            let conv = &expected["conversations"][case["conversation"].as_str().unwrap()];
            let mut file = json!({"messages": conv["messages"], "tools": conv["tools"]});
            for (k, v) in case["extra"].as_object().unwrap() {
                file[k] = v.clone();
            }
            // transformers was run with its clock pinned to 2024-07-26 (fixed_now); the published
            // templates format it as "%d %b %Y". Pin ours the same way.
            file["strftime_now_fixed"] = "26 Jul 2024".into();
            let msgs = dir.join("messages.json");
            std::fs::write(&msgs, file.to_string()).unwrap();
            let mut args = vec![
                "render",
                dir.to_str().unwrap(),
                "--messages",
                msgs.to_str().unwrap(),
            ];
            if !conv["add_generation_prompt"].as_bool().unwrap() {
                args.push("--no-generation-prompt");
            }
            let o = herd(&args);
            let label = format!("{name} x {}", case["conversation"]);
            let stderr = String::from_utf8_lossy(&o.stderr);
            if let Some(out) = case["expected"]["output"].as_str() {
                assert!(o.status.success(), "{label}: {stderr}");
                assert_eq!(String::from_utf8(o.stdout).unwrap(), out, "{label}");
            } else if let Some(msg) = case["expected"]["raised"].as_str() {
                assert!(
                    !o.status.success(),
                    "{label}: rendered although the template raises"
                );
                assert!(
                    stderr.contains(msg) && stderr.starts_with("error: "),
                    "{label}: {stderr}"
                );
                assert_eq!(stderr.lines().count(), 1, "{label}: {stderr}");
            } else {
                // Cases where jinja2 itself errors: herd must fail cleanly or render (see the
                // chat crate's notes on known differences), never crash.
                assert!(!stderr.contains("panicked"), "{label}: {stderr}");
            }
            n_checked += 1;
        }
        std::fs::remove_dir_all(&dir).ok();
    }
    assert!(n_checked >= 40, "only {n_checked} cases checked");
}

#[test]
fn render_without_template_uses_builtin_and_reports_bad_template() {
    let fixtures = testdata::fixtures().join("tokenizers/bpe");
    let msgs = std::env::temp_dir().join(format!("herd-render-msgs-{}.json", std::process::id()));
    std::fs::write(&msgs, r#"[{"role": "user", "content": "Hi"}]"#).unwrap();
    // The test tokenizer has Llama 3's header tokens and no template: the Llama 3 built-in.
    let o = herd(&[
        "render",
        fixtures.to_str().unwrap(),
        "--messages",
        msgs.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    let dir = tokenizer_dir(
        "broken",
        "{% for m in messages %}{{ m.content ",
        "<s>",
        "</s>",
    );
    let o = herd(&[
        "render",
        dir.to_str().unwrap(),
        "--messages",
        msgs.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("tokenizer_config.json"),
        "{err}"
    );
    std::fs::write(dir.join("tokenizer.json"), "{ not json").unwrap();
    let o = herd(&[
        "render",
        dir.to_str().unwrap(),
        "--messages",
        msgs.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("tokenizer.json"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_file(&msgs).ok();
}
