//! Loading damaged checkpoints: each gives an error naming the file and the field or tensor,
//! never a panic.

use std::path::{Path, PathBuf};

fn tmp_copy(src: &Path, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herd-bad-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    dir
}

fn load_err(path: &Path) -> String {
    match engine::load_model(path) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string(&v).unwrap()).unwrap();
}

#[test]
fn hf_config_disagreeing_with_tensor_shape_names_tensor() {
    let dir = tmp_copy(&testdata::fixtures().join("hf/mha"), "shape");
    edit_json(&dir.join("config.json"), |v| {
        v["intermediate_size"] = 40.into()
    });
    let e = load_err(&dir);
    assert!(
        e.contains("model.layers.0.mlp.gate_proj.weight") && e.contains("expected shape [40, 32]"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn hf_config_missing_field_is_named() {
    let dir = tmp_copy(&testdata::fixtures().join("hf/mha"), "field");
    edit_json(&dir.join("config.json"), |v| {
        v.as_object_mut().unwrap().remove("hidden_size");
    });
    let e = load_err(&dir);
    assert!(
        e.contains("config.json") && e.contains("hidden_size"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn hf_absurd_config_is_refused_without_allocating() {
    let dir = tmp_copy(&testdata::fixtures().join("hf/mha"), "absurd");
    edit_json(&dir.join("config.json"), |v| {
        v["num_hidden_layers"] = (1u64 << 40).into()
    });
    let e = load_err(&dir);
    assert!(e.contains("n_layers"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn truncated_safetensors_names_file() {
    let dir = tmp_copy(&testdata::fixtures().join("hf/mha"), "trunc-st");
    let st = dir.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() - 100]).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("model.safetensors"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn meta_params_disagreeing_with_weights_names_tensor() {
    let dir = tmp_copy(&testdata::fixtures().join("meta"), "meta");
    edit_json(&dir.join("params.json"), |v| v["n_layers"] = 3.into());
    let e = load_err(&dir);
    assert!(e.contains("layers.2.") && e.contains("missing"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn truncated_pth_names_file() {
    let dir = tmp_copy(&testdata::fixtures().join("meta"), "trunc-pth");
    let p = dir.join("consolidated.00.pth");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("consolidated.00.pth"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn gguf_truncated_at_many_points_never_panics() {
    let src = testdata::fixtures().join("gguf/gqa-q8_0.gguf");
    let bytes = std::fs::read(&src).unwrap();
    let dir = std::env::temp_dir().join(format!("herd-bad-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cut.gguf");
    for i in 0..64 {
        let cut = 4 + (bytes.len() - 5) * i / 64;
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = load_err(&path);
        assert!(e.contains("cut.gguf"), "cut at {cut}: {e}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unknown_gguf_architecture_is_named() {
    let src = std::fs::read(testdata::fixtures().join("gguf/gqa-f32.gguf")).unwrap();
    // Rewrite the value of general.architecture ("llama") in place to another 5-letter name.
    let pos = src.windows(5).position(|w| w == b"llama").unwrap();
    let mut bytes = src.clone();
    bytes[pos..pos + 5].copy_from_slice(b"gpt2x");
    let path = std::env::temp_dir().join(format!("herd-bad-arch-{}.gguf", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let e = load_err(&path);
    assert!(e.contains("unknown architecture 'gpt2x'"), "{e}");
    std::fs::remove_file(&path).ok();
}
