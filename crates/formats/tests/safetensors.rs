//! safetensors files and Hugging Face directories, written into temporary folders.

use std::path::{Path, PathBuf};

use formats::hf::{read_json, read_safetensors, read_safetensors_dir};
use formats::{DType, FormatError};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("herd-safetensors-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes a safetensors file with the reference serializer.
fn write_st(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (*n, TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, &None, path).unwrap();
}

/// A safetensors file from a raw header JSON and data bytes.
fn raw_st(header: &str, data: &[u8]) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

fn assert_mentions(e: &FormatError, path: &Path, words: &[&str]) {
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "no path in: {msg}"
    );
    for w in words {
        assert!(msg.contains(w), "'{w}' not in: {msg}");
    }
}

#[test]
fn single_file() {
    let dir = TempDir::new("single");
    let p = dir.path("model.safetensors");
    let w = f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let h: Vec<u8> = (0..8u8).collect();
    let bf: Vec<u8> = (10..14u8).collect();
    write_st(
        &p,
        &[
            (
                "model.layers.0.mlp.up_proj.weight",
                Dtype::F32,
                vec![2, 3],
                w.clone(),
            ),
            ("model.norm.weight", Dtype::F16, vec![4], h.clone()),
            ("lm_head.weight", Dtype::BF16, vec![1, 2], bf.clone()),
        ],
    );
    let ts = read_safetensors(&p).unwrap();
    assert_eq!(ts.len(), 3);
    let find = |n: &str| ts.iter().find(|t| t.name == n).unwrap();
    let up = find("model.layers.0.mlp.up_proj.weight");
    assert_eq!((up.dtype, up.shape.clone()), (DType::F32, vec![2, 3]));
    assert_eq!(up.bytes(), &w[..]);
    assert!(up.storage().is_mapped());
    let norm = find("model.norm.weight");
    assert_eq!((norm.dtype, norm.shape.clone()), (DType::F16, vec![4]));
    assert_eq!(norm.bytes(), &h[..]);
    let head = find("lm_head.weight");
    assert_eq!((head.dtype, head.shape.clone()), (DType::BF16, vec![1, 2]));
    assert_eq!(head.bytes(), &bf[..]);

    // The directory reader picks model.safetensors.
    let all = read_safetensors_dir(&dir.0).unwrap();
    assert_eq!(all.len(), 3);
}

#[test]
fn metadata_entry_and_scalar() {
    let dir = TempDir::new("metadata");
    let data = f32_bytes(&[7.0, 1.0, 2.0]);
    let header = r#"{"__metadata__":{"format":"pt"},"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    let p = dir.write("m.safetensors", &raw_st(header, &data));
    let ts = read_safetensors(&p).unwrap();
    let names: Vec<&str> = ts.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["s", "v"]);
    assert_eq!(ts[0].shape, Vec::<usize>::new());
    assert_eq!(ts[1].bytes(), &f32_bytes(&[1.0, 2.0])[..]);
}

#[test]
fn sharded_with_index() {
    let dir = TempDir::new("sharded");
    let a = f32_bytes(&[1.0, 2.0]);
    let b = f32_bytes(&[3.0, 4.0, 5.0]);
    let c = f32_bytes(&[6.0]);
    write_st(
        &dir.path("model-00001-of-00002.safetensors"),
        &[
            ("a", Dtype::F32, vec![2], a.clone()),
            ("b", Dtype::F32, vec![3], b.clone()),
        ],
    );
    write_st(
        &dir.path("model-00002-of-00002.safetensors"),
        &[("c", Dtype::F32, vec![1], c.clone())],
    );
    let index = r#"{"metadata":{"total_size":24},"weight_map":{
        "a":"model-00001-of-00002.safetensors",
        "b":"model-00001-of-00002.safetensors",
        "c":"model-00002-of-00002.safetensors"}}"#;
    dir.write("model.safetensors.index.json", index.as_bytes());
    // A stray file that the index does not name must be ignored.
    write_st(
        &dir.path("stray.safetensors"),
        &[("a", Dtype::F32, vec![1], c.clone())],
    );

    let ts = read_safetensors_dir(&dir.0).unwrap();
    let mut got: Vec<(&str, &[u8])> = ts.iter().map(|t| (t.name.as_str(), t.bytes())).collect();
    got.sort();
    assert_eq!(got, vec![("a", &a[..]), ("b", &b[..]), ("c", &c[..])]);

    // A name in the index missing from its shard.
    let index = r#"{"weight_map":{"a":"model-00001-of-00002.safetensors","zz":"model-00002-of-00002.safetensors"}}"#;
    dir.write("model.safetensors.index.json", index.as_bytes());
    let e = read_safetensors_dir(&dir.0).unwrap_err();
    assert!(matches!(e, FormatError::BadTensor { .. }), "{e}");
    assert_mentions(&e, &dir.path("model-00002-of-00002.safetensors"), &["'zz'"]);

    // A shard outside the directory.
    let index = r#"{"weight_map":{"a":"../x.safetensors"}}"#;
    dir.write("model.safetensors.index.json", index.as_bytes());
    let e = read_safetensors_dir(&dir.0).unwrap_err();
    assert_mentions(
        &e,
        &dir.path("model.safetensors.index.json"),
        &["../x.safetensors"],
    );

    // No weight_map.
    dir.write("model.safetensors.index.json", b"{\"metadata\":{}}");
    let e = read_safetensors_dir(&dir.0).unwrap_err();
    assert_mentions(
        &e,
        &dir.path("model.safetensors.index.json"),
        &["weight_map"],
    );

    // Duplicate names across shards (no index: every *.safetensors is read).
    std::fs::remove_file(dir.path("model.safetensors.index.json")).unwrap();
    let e = read_safetensors_dir(&dir.0).unwrap_err();
    assert!(matches!(e, FormatError::BadTensor { .. }), "{e}");
    assert_mentions(
        &e,
        &dir.path("stray.safetensors"),
        &["'a'", "model-00001-of-00002.safetensors"],
    );

    // Without the stray file the unindexed directory reads all shards in name order.
    std::fs::remove_file(dir.path("stray.safetensors")).unwrap();
    let ts = read_safetensors_dir(&dir.0).unwrap();
    let names: Vec<&str> = ts.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn empty_dir() {
    let dir = TempDir::new("empty");
    dir.write("config.json", b"{}");
    let e = read_safetensors_dir(&dir.0).unwrap_err();
    assert_mentions(&e, &dir.0, &["safetensors"]);
    let e = read_safetensors_dir(&dir.path("missing")).unwrap_err();
    assert!(matches!(e, FormatError::Io { .. }), "{e}");
}

#[test]
fn header_length_larger_than_file() {
    let dir = TempDir::new("header_len");
    let mut b = raw_st(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 4],
    );
    b[..8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let p = dir.write("h.safetensors", &b);
    let e = read_safetensors(&p).unwrap_err();
    assert!(matches!(e, FormatError::Corrupt { .. }), "{e}");
    assert_mentions(&e, &p, &["header length", &(1u64 << 62).to_string()]);

    b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let p = dir.write("max.safetensors", &b);
    let e = read_safetensors(&p).unwrap_err();
    assert_mentions(&e, &p, &["header length"]);

    let p = dir.write("short.safetensors", &[1, 2, 3]);
    let e = read_safetensors(&p).unwrap_err();
    assert_mentions(&e, &p, &["header length"]);
}

#[test]
fn truncated_at_every_length() {
    let dir = TempDir::new("truncated");
    let p = dir.path("full.safetensors");
    write_st(
        &p,
        &[
            (
                "x",
                Dtype::F32,
                vec![2, 2],
                f32_bytes(&[1.0, 2.0, 3.0, 4.0]),
            ),
            ("y", Dtype::F16, vec![3], vec![1, 2, 3, 4, 5, 6]),
        ],
    );
    let full = std::fs::read(&p).unwrap();
    assert_eq!(read_safetensors(&p).unwrap().len(), 2);
    for cut in 0..full.len() {
        let q = dir.write("cut.safetensors", &full[..cut]);
        assert!(
            read_safetensors(&q).is_err(),
            "prefix of {cut} of {} bytes parsed",
            full.len()
        );
    }
    // Cut inside the data: the last tensor's range no longer fits.
    let q = dir.write("cut.safetensors", &full[..full.len() - 1]);
    let e = read_safetensors(&q).unwrap_err();
    assert!(matches!(e, FormatError::BadTensor { .. }), "{e}");
    assert_mentions(&e, &q, &["data_offsets"]);
}

#[test]
fn data_offsets_past_end() {
    let dir = TempDir::new("offsets");
    let header = r#"{"w.far":{"dtype":"F32","shape":[2],"data_offsets":[0,4000]}}"#;
    let p = dir.write("far.safetensors", &raw_st(header, &[0; 8]));
    let e = read_safetensors(&p).unwrap_err();
    assert!(matches!(e, FormatError::BadTensor { .. }), "{e}");
    assert_mentions(&e, &p, &["w.far", "4000"]);

    let header = r#"{"w.rev":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#;
    let p = dir.write("rev.safetensors", &raw_st(header, &[0; 8]));
    assert_mentions(&read_safetensors(&p).unwrap_err(), &p, &["w.rev"]);

    // In range, but the wrong size for the shape.
    let header = r#"{"w.size":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
    let p = dir.write("size.safetensors", &raw_st(header, &[0; 8]));
    let e = read_safetensors(&p).unwrap_err();
    assert!(matches!(e, FormatError::BadTensor { .. }), "{e}");
    assert_mentions(&e, &p, &["w.size", "12"]);

    // Shape product overflow.
    let header = r#"{"w.big":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#;
    let p = dir.write("big.safetensors", &raw_st(header, &[0; 8]));
    assert_mentions(&read_safetensors(&p).unwrap_err(), &p, &["w.big"]);
}

#[test]
fn unsupported_dtype() {
    let dir = TempDir::new("dtype");
    let p = dir.path("i64.safetensors");
    write_st(&p, &[("position_ids", Dtype::I64, vec![2], vec![0; 16])]);
    let e = read_safetensors(&p).unwrap_err();
    assert!(matches!(e, FormatError::Unsupported { .. }), "{e}");
    assert_mentions(&e, &p, &["position_ids", "I64"]);

    let header = r#"{"q":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#;
    let p = dir.write("u8.safetensors", &raw_st(header, &[0; 2]));
    assert_mentions(&read_safetensors(&p).unwrap_err(), &p, &["'q'", "U8"]);
}

#[test]
fn malformed_headers() {
    let dir = TempDir::new("malformed");
    let cases: &[(&str, &str, &[&str])] = &[
        ("json.safetensors", "{\"a\": ", &["header JSON", "line 1"]),
        ("array.safetensors", "[1, 2]", &["header JSON"]),
        (
            "nodtype.safetensors",
            r#"{"a":{"shape":[1],"data_offsets":[0,4]}}"#,
            &["'a'", "dtype"],
        ),
        (
            "noshape.safetensors",
            r#"{"a":{"dtype":"F32","data_offsets":[0,4]}}"#,
            &["'a'", "shape"],
        ),
        (
            "negshape.safetensors",
            r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
            &["'a'", "shape"],
        ),
        (
            "offs.safetensors",
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#,
            &["'a'", "data_offsets"],
        ),
        (
            "dup.safetensors",
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            &["duplicate", "'a'"],
        ),
        (
            "meta.safetensors",
            r#"{"__metadata__":3}"#,
            &["__metadata__"],
        ),
    ];
    for (name, header, words) in cases {
        let p = dir.write(name, &raw_st(header, &[0; 4]));
        let e = read_safetensors(&p).unwrap_err();
        assert_mentions(&e, &p, words);
    }
}

#[test]
fn json_files() {
    let dir = TempDir::new("json");
    let p = dir.write(
        "config.json",
        br#"{"hidden_size": 64, "rope_theta": 10000.0}"#,
    );
    let v = read_json(&p).unwrap();
    assert_eq!(v["hidden_size"], 64);
    let p = dir.write("bad.json", b"{\n  \"a\": 1,\n  \"b\": }\n");
    let e = read_json(&p).unwrap_err();
    assert!(matches!(e, FormatError::Corrupt { .. }), "{e}");
    assert_mentions(&e, &p, &["line 3"]);
    let e = read_json(&dir.path("absent.json")).unwrap_err();
    assert!(matches!(e, FormatError::Io { .. }), "{e}");
}
