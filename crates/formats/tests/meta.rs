//! Meta `.pth` archives (hand-built and a real `torch.save` file), `params.json` and shard
//! discovery.

use std::io::Write;
use std::path::{Path, PathBuf};

use formats::meta::{consolidated_shards, read_params, read_pth};
use formats::{DType, FormatError, Tensor};

fn tmp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("meta-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// `[i * 0.25 - 1 for i in range(n)]`, the values of the committed torch file.
fn v(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32 * 0.25 - 1.0).collect()
}

fn f32s(t: &Tensor) -> Vec<f32> {
    assert_eq!(t.dtype, DType::F32, "{}", t.name);
    t.bytes()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn bf16s(t: &Tensor) -> Vec<f32> {
    assert_eq!(t.dtype, DType::BF16, "{}", t.name);
    t.bytes()
        .chunks_exact(2)
        .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
        .collect()
}

fn f16s(t: &Tensor) -> Vec<f32> {
    assert_eq!(t.dtype, DType::F16, "{}", t.name);
    t.bytes()
        .chunks_exact(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}

fn get<'a>(ts: &'a [Tensor], name: &str) -> &'a Tensor {
    ts.iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
}

fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| x[r * cols + c]))
        .collect()
}

// ---- the committed torch.save file -----------------------------------------------------------

#[test]
fn real_torch_save_archive() {
    let path = data_dir().join("tiny_torch.pth");
    let ts = read_pth(&path).unwrap();
    let names: Vec<&str> = ts.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["0.weight", "0.bias", "1.weight", "1.bias", "wt", "rows", "half", "param"]
    );
    let shapes: Vec<&[usize]> = ts.iter().map(|t| t.shape.as_slice()).collect();
    assert_eq!(
        shapes,
        [
            &[3, 4][..],
            &[3],
            &[3],
            &[3],
            &[4, 3],
            &[2, 4],
            &[2, 3],
            &[2, 2]
        ]
    );
    let w = get(&ts, "0.weight");
    assert_eq!(f32s(w), v(12));
    assert!(w.storage().is_mapped());
    assert_eq!(f32s(get(&ts, "0.bias")), v(3));
    assert_eq!(bf16s(get(&ts, "1.weight")), v(3));
    assert_eq!(bf16s(get(&ts, "1.bias")), v(3));
    let wt = get(&ts, "wt");
    assert!(!wt.storage().is_mapped(), "a transposed view is copied");
    assert_eq!(f32s(wt), transpose(&v(12), 3, 4));
    let rows = get(&ts, "rows");
    assert!(rows.storage().is_mapped(), "a row slice is contiguous");
    assert_eq!(f32s(rows), v(20)[4..12].to_vec());
    assert_eq!(f16s(get(&ts, "half")), v(6));
    assert_eq!(f32s(get(&ts, "param")), v(4));
}

// ---- hand-built archives ---------------------------------------------------------------------

/// Writes pickle opcodes the way `torch.save` does (protocol 2).
#[derive(Default)]
struct Pkl(Vec<u8>);

impl Pkl {
    fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn s(&mut self, s: &str) -> &mut Self {
        self.raw(b"X")
            .raw(&(s.len() as u32).to_le_bytes())
            .raw(s.as_bytes())
    }
    fn int(&mut self, i: u64) -> &mut Self {
        match i {
            0..=255 => self.raw(&[b'K', i as u8]),
            256..=65535 => self.raw(b"M").raw(&(i as u16).to_le_bytes()),
            _ => self.raw(&[0x8a, 8]).raw(&i.to_le_bytes()),
        }
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.raw(format!("c{module}\n{name}\n").as_bytes())
    }
    fn ints(&mut self, v: &[u64]) -> &mut Self {
        self.raw(b"(");
        for &i in v {
            self.int(i);
        }
        self.raw(b"t")
    }
    /// `_rebuild_tensor_v2(('storage', torch.<ty>, key, 'cpu', numel), offset, size, stride,
    /// False, OrderedDict())`; the rebuild global is memoized at 1 and fetched after first use.
    fn tensor(
        &mut self,
        ty: &str,
        key: &str,
        numel: u64,
        offset: u64,
        size: &[u64],
        stride: &[u64],
    ) -> &mut Self {
        if self.0.windows(17).any(|w| w == b"_rebuild_tensor_v") {
            self.raw(&[b'h', 1]);
        } else {
            self.global("torch._utils", "_rebuild_tensor_v2")
                .raw(&[b'q', 1]);
        }
        self.raw(b"((")
            .s("storage")
            .global("torch", ty)
            .s(key)
            .s("cpu")
            .int(numel);
        self.raw(b"tQ").int(offset).ints(size).ints(stride);
        self.raw(&[0x89])
            .global("collections", "OrderedDict")
            .raw(b")R")
            .raw(b"tR")
    }
    fn start_dict(&mut self) -> &mut Self {
        self.raw(&[0x80, 2])
            .global("collections", "OrderedDict")
            .raw(b")R(")
    }
    fn end_dict(&mut self) -> Vec<u8> {
        self.raw(b"u.");
        std::mem::take(&mut self.0)
    }
}

fn le_f32(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|f| f.to_le_bytes()).collect()
}

fn le_bf16(x: &[f32]) -> Vec<u8> {
    x.iter()
        .flat_map(|f| ((f.to_bits() >> 16) as u16).to_le_bytes())
        .collect()
}

fn zip_bytes(entries: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A state dict of three tensors: "w" f32 [3, 4] (storage 0), "b" bf16 [4, 2] at offset 2 of a
/// 10-element storage 1, "wt" the transpose of "w", and a non-tensor "step".
fn standard_pickle() -> Vec<u8> {
    let mut p = Pkl::default();
    p.start_dict();
    p.s("w")
        .tensor("FloatStorage", "0", 12, 0, &[3, 4], &[4, 1]);
    p.s("b")
        .tensor("BFloat16Storage", "1", 10, 2, &[4, 2], &[2, 1]);
    p.s("wt")
        .tensor("FloatStorage", "0", 12, 0, &[4, 3], &[1, 4]);
    p.s("step").int(1000);
    p.end_dict()
}

fn standard_archive(pkl: &[u8], method: zip::CompressionMethod) -> Vec<u8> {
    let s0 = le_f32(&v(12));
    let s1 = le_bf16(&v(10));
    zip_bytes(
        &[
            ("archive/data.pkl", pkl),
            ("archive/byteorder", b"little"),
            ("archive/data/0", &s0),
            ("archive/data/1", &s1),
            ("archive/version", b"3\n"),
        ],
        method,
    )
}

fn check_standard(ts: &[Tensor], mapped: bool) {
    let names: Vec<&str> = ts.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["w", "b", "wt"]);
    assert_eq!(ts[0].shape, [3, 4]);
    assert_eq!(f32s(&ts[0]), v(12));
    assert_eq!(ts[0].storage().is_mapped(), mapped);
    assert_eq!(ts[1].shape, [4, 2]);
    assert_eq!(bf16s(&ts[1]), v(10)[2..].to_vec());
    assert_eq!(ts[1].storage().is_mapped(), mapped);
    assert_eq!(ts[2].shape, [4, 3]);
    assert!(!ts[2].storage().is_mapped());
    assert_eq!(f32s(&ts[2]), transpose(&v(12), 3, 4));
}

#[test]
fn handmade_archive_stored() {
    let dir = tmp_dir("stored");
    let p = write_file(
        &dir,
        "consolidated.00.pth",
        &standard_archive(&standard_pickle(), zip::CompressionMethod::Stored),
    );
    check_standard(&read_pth(&p).unwrap(), true);
}

#[test]
fn handmade_archive_deflated_is_copied() {
    let dir = tmp_dir("deflated");
    let p = write_file(
        &dir,
        "x.pth",
        &standard_archive(&standard_pickle(), zip::CompressionMethod::Deflated),
    );
    check_standard(&read_pth(&p).unwrap(), false);
}

#[test]
fn untyped_storage_with_dtype_global() {
    // ('storage', torch.storage.UntypedStorage, key, 'cpu', nbytes, torch.bfloat16)
    let mut p = Pkl::default();
    p.start_dict()
        .s("u")
        .global("torch._utils", "_rebuild_tensor_v2");
    p.raw(b"((")
        .s("storage")
        .global("torch.storage", "UntypedStorage")
        .s("1")
        .s("cpu")
        .int(20);
    p.global("torch", "bfloat16")
        .raw(b"tQ")
        .int(0)
        .ints(&[10])
        .ints(&[1]);
    p.raw(&[0x89]).raw(b"}").raw(b"tR");
    let pkl = p.end_dict();
    let dir = tmp_dir("untyped");
    let path = write_file(
        &dir,
        "u.pth",
        &standard_archive(&pkl, zip::CompressionMethod::Stored),
    );
    let ts = read_pth(&path).unwrap();
    assert_eq!(ts.len(), 1);
    assert_eq!(ts[0].shape, [10]);
    assert_eq!(bf16s(&ts[0]), v(10));
}

// ---- errors ----------------------------------------------------------------------------------

fn err_of(path: &Path) -> FormatError {
    let e = read_pth(path).expect_err("reading should fail");
    assert!(
        e.to_string().contains(&path.display().to_string()),
        "error names the file: {e}"
    );
    e
}

#[test]
fn truncated_zip() {
    let dir = tmp_dir("truncated");
    let full = standard_archive(&standard_pickle(), zip::CompressionMethod::Stored);
    for cut in [full.len() / 2, full.len() - 10, 3, 0] {
        let p = write_file(&dir, &format!("cut{cut}.pth"), &full[..cut]);
        let e = err_of(&p);
        assert!(matches!(e, FormatError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("zip"), "{e}");
    }
}

#[test]
fn garbage_opcode() {
    let dir = tmp_dir("garbage");
    let mut pkl = standard_pickle();
    let at = pkl.len() - 2; // replaces SETITEMS
    pkl[at] = 0xfe;
    let p = write_file(
        &dir,
        "g.pth",
        &standard_archive(&pkl, zip::CompressionMethod::Stored),
    );
    let e = err_of(&p);
    assert!(matches!(e, FormatError::Corrupt { .. }), "{e}");
    let s = e.to_string();
    assert!(s.contains("archive/data.pkl"), "{s}");
    assert!(s.contains("0xfe"), "{s}");
    assert!(s.contains(&format!("offset {at}")), "{s}");
}

#[test]
fn storage_too_small() {
    let dir = tmp_dir("small");
    // "big" claims 16 elements of the 12-element storage 0.
    let mut p = Pkl::default();
    p.start_dict();
    p.s("w")
        .tensor("FloatStorage", "0", 12, 0, &[3, 4], &[4, 1]);
    p.s("big")
        .tensor("FloatStorage", "0", 12, 0, &[4, 4], &[4, 1]);
    let path = write_file(
        &dir,
        "s.pth",
        &standard_archive(&p.end_dict(), zip::CompressionMethod::Stored),
    );
    let e = err_of(&path);
    match &e {
        FormatError::BadTensor { tensor, msg, .. } => {
            assert_eq!(tensor, "big");
            assert!(msg.contains("element 16"), "{msg}");
        }
        other => panic!("expected BadTensor, got {other}"),
    }
    // A storage that declares more elements than its entry holds.
    let mut p = Pkl::default();
    p.start_dict()
        .s("w")
        .tensor("FloatStorage", "0", 13, 0, &[13], &[1]);
    let path = write_file(
        &dir,
        "s2.pth",
        &standard_archive(&p.end_dict(), zip::CompressionMethod::Stored),
    );
    let e = err_of(&path);
    assert!(
        matches!(&e, FormatError::BadTensor { tensor, .. } if tensor == "w"),
        "{e}"
    );
    assert!(
        e.to_string().contains("52 bytes but its entry holds 48"),
        "{e}"
    );
    // A view at an offset past the storage.
    let mut p = Pkl::default();
    p.start_dict()
        .s("off")
        .tensor("FloatStorage", "0", 12, 11, &[2], &[1]);
    let path = write_file(
        &dir,
        "s3.pth",
        &standard_archive(&p.end_dict(), zip::CompressionMethod::Stored),
    );
    assert!(matches!(err_of(&path), FormatError::BadTensor { .. }));
    // A broadcast view (stride 0) bigger than its storage is refused, not materialized.
    let mut p = Pkl::default();
    p.start_dict()
        .s("bc")
        .tensor("FloatStorage", "0", 12, 0, &[1 << 40], &[0]);
    let path = write_file(
        &dir,
        "s4.pth",
        &standard_archive(&p.end_dict(), zip::CompressionMethod::Stored),
    );
    let e = err_of(&path);
    assert!(e.to_string().contains("overlaps"), "{e}");
}

#[test]
fn missing_data_pkl_or_storage() {
    let dir = tmp_dir("missing");
    let s0 = le_f32(&v(12));
    let p = write_file(
        &dir,
        "nopkl.pth",
        &zip_bytes(&[("archive/data/0", &s0)], zip::CompressionMethod::Stored),
    );
    let e = err_of(&p);
    assert!(
        matches!(&e, FormatError::Corrupt { field, .. } if field == "data.pkl"),
        "{e}"
    );
    assert!(e.to_string().contains("archive/data/0"), "{e}");

    let pkl = standard_pickle();
    let p = write_file(
        &dir,
        "nostorage.pth",
        &zip_bytes(
            &[("archive/data.pkl", &pkl), ("archive/data/0", &s0)],
            zip::CompressionMethod::Stored,
        ),
    );
    let e = err_of(&p);
    assert!(
        matches!(&e, FormatError::BadTensor { tensor, .. } if tensor == "b"),
        "{e}"
    );
    assert!(e.to_string().contains("'archive/data/1' is missing"), "{e}");
}

#[test]
fn big_endian_and_unsupported_dtypes() {
    let dir = tmp_dir("unsupported");
    let pkl = standard_pickle();
    let s0 = le_f32(&v(12));
    let p = write_file(
        &dir,
        "big.pth",
        &zip_bytes(
            &[
                ("a/data.pkl", &pkl),
                ("a/byteorder", b"big"),
                ("a/data/0", &s0),
            ],
            zip::CompressionMethod::Stored,
        ),
    );
    let e = err_of(&p);
    assert!(matches!(e, FormatError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("big-endian"), "{e}");

    let mut k = Pkl::default();
    k.start_dict()
        .s("ids")
        .tensor("LongStorage", "0", 6, 0, &[6], &[1]);
    let p = write_file(
        &dir,
        "long.pth",
        &standard_archive(&k.end_dict(), zip::CompressionMethod::Stored),
    );
    let e = err_of(&p);
    assert!(matches!(e, FormatError::Unsupported { .. }), "{e}");
    let s = e.to_string();
    assert!(
        s.contains("'ids'") && s.contains("torch.LongStorage"),
        "{s}"
    );
}

#[test]
fn not_a_dict_or_not_a_tensor_where_expected() {
    let dir = tmp_dir("shape");
    let p = write_file(
        &dir,
        "list.pth",
        &standard_archive(&[0x80, 2, b']', b'.'], zip::CompressionMethod::Stored),
    );
    let e = err_of(&p);
    assert!(e.to_string().contains("expected a dict"), "{e}");

    // A rebuild call whose persistent id is not a storage tuple.
    let mut k = Pkl::default();
    k.start_dict()
        .s("t")
        .global("torch._utils", "_rebuild_tensor_v2");
    k.raw(b"(")
        .s("x")
        .raw(b"Q")
        .int(0)
        .ints(&[2])
        .ints(&[1])
        .raw(&[0x89])
        .raw(b"}tR");
    let p = write_file(
        &dir,
        "pid.pth",
        &standard_archive(&k.end_dict(), zip::CompressionMethod::Stored),
    );
    let e = err_of(&p);
    assert!(
        matches!(&e, FormatError::BadTensor { tensor, .. } if tensor == "t"),
        "{e}"
    );
    assert!(e.to_string().contains("persistent id"), "{e}");

    // Unknown globals are opaque values, skipped when they are not tensors.
    let mut k = Pkl::default();
    k.start_dict()
        .s("w")
        .tensor("FloatStorage", "0", 12, 0, &[12], &[1]);
    k.s("opaque")
        .global("os", "system")
        .s("true")
        .raw(&[0x85])
        .raw(b"R");
    let p = write_file(
        &dir,
        "opaque.pth",
        &standard_archive(&k.end_dict(), zip::CompressionMethod::Stored),
    );
    let ts = read_pth(&p).unwrap();
    assert_eq!(ts.len(), 1);
    assert_eq!(ts[0].name, "w");
}

#[test]
fn missing_file_is_io_error() {
    let dir = tmp_dir("nofile");
    assert!(matches!(
        read_pth(&dir.join("none.pth")),
        Err(FormatError::Io { .. })
    ));
}

// ---- params.json and shards --------------------------------------------------------------------

#[test]
fn params_json() {
    let dir = tmp_dir("params");
    let llama2 = r#"{"dim": 4096, "multiple_of": 256, "n_heads": 32, "n_layers": 32, "norm_eps": 1e-05, "vocab_size": -1}"#;
    let p = write_file(&dir, "params.json", llama2.as_bytes());
    let v = read_params(&p).unwrap();
    assert_eq!(v["dim"], 4096);
    assert_eq!(v["vocab_size"], -1);

    let llama31 = r#"{"dim": 4096, "n_layers": 32, "n_heads": 32, "n_kv_heads": 8, "vocab_size": 128256,
        "ffn_dim_multiplier": 1.3, "multiple_of": 1024, "norm_eps": 1e-05, "rope_theta": 500000.0,
        "use_scaled_rope": true}"#;
    let p = write_file(&dir, "params31.json", llama31.as_bytes());
    let v = read_params(&p).unwrap();
    assert_eq!(v["n_kv_heads"], 8);
    assert_eq!(v["use_scaled_rope"], true);

    for (i, (text, field)) in [
        (r#"{"n_layers": 2, "n_heads": 2}"#, "dim"),
        (r#"{"dim": 0, "n_layers": 2, "n_heads": 2}"#, "dim"),
        (
            r#"{"dim": 8, "n_layers": 2, "n_heads": 2, "n_kv_heads": "x"}"#,
            "n_kv_heads",
        ),
        (
            r#"{"dim": 8, "n_layers": 2, "n_heads": 2, "vocab_size": -5}"#,
            "vocab_size",
        ),
        (
            r#"{"dim": 8, "n_layers": 2, "n_heads": 2, "norm_eps": -1}"#,
            "norm_eps",
        ),
        (r#"[1, 2]"#, "json"),
        (r#"{"dim": 8,"#, "json"),
    ]
    .iter()
    .enumerate()
    {
        let p = write_file(&dir, &format!("bad{i}.json"), text.as_bytes());
        match read_params(&p) {
            Err(FormatError::Corrupt { field: f, path, .. }) => {
                assert_eq!(&f, field, "case {i}");
                assert_eq!(path, p);
            }
            other => panic!("case {i}: expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn shard_discovery() {
    let dir = tmp_dir("shards");
    for n in [10, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9] {
        write_file(&dir, &format!("consolidated.{n:02}.pth"), b"");
    }
    write_file(&dir, "params.json", b"{}");
    write_file(&dir, "consolidated.xx.pth", b"");
    let shards = consolidated_shards(&dir).unwrap();
    let names: Vec<String> = shards
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let want: Vec<String> = (0..=10)
        .map(|n| format!("consolidated.{n:02}.pth"))
        .collect();
    assert_eq!(names, want);

    std::fs::remove_file(dir.join("consolidated.04.pth")).unwrap();
    let e = consolidated_shards(&dir).unwrap_err();
    assert!(e.to_string().contains("shard 4 is missing"), "{e}");

    let empty = tmp_dir("shards-empty");
    let e = consolidated_shards(&empty).unwrap_err();
    assert!(e.to_string().contains(&empty.display().to_string()), "{e}");
    assert!(matches!(
        consolidated_shards(&empty.join("nope")),
        Err(FormatError::Io { .. })
    ));
}
