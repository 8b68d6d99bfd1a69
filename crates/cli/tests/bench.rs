//! `herd bench` end to end on a tiny synthetic model: the shape of its output (never its
//! timings) and one clean error line on bad names.

use std::process::{Command, Output};

use serde_json::Value;

fn herd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

const TINY: &[&str] = &[
    "bench",
    "--synthetic",
    "stories15m",
    "--type",
    "q8_0",
    "-p",
    "8",
    "-n",
    "4",
    "-r",
    "2",
    "-t",
    "1,2",
];

#[test]
fn json_rows_cover_every_thread_count_and_test() {
    let o = herd(&[TINY, &["--output", "json"]].concat());
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    let rows: Value = serde_json::from_slice(&o.stdout).expect("stdout is one JSON document");
    let rows = rows.as_array().expect("an array of rows");
    let got: Vec<(u64, u64, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["n_threads"].as_u64().unwrap(),
                r["n_prompt"].as_u64().unwrap(),
                r["n_gen"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![(1, 8, 0), (1, 0, 4), (2, 8, 0), (2, 0, 4)]);
    for r in rows {
        for key in [
            "model_filename",
            "model_type",
            "model_size",
            "model_n_params",
            "avg_ts",
            "stddev_ts",
            "bandwidth_gbps",
            "peak_rss_bytes",
        ] {
            assert!(!r[key].is_null(), "{key} missing in {r}");
        }
        assert_eq!(r["samples_ts"].as_array().unwrap().len(), 2, "{r}");
        assert_eq!(r["samples_ns"].as_array().unwrap().len(), 2, "{r}");
        assert!(r["avg_ts"].as_f64().unwrap() > 0.0);
        assert!(r["bandwidth_gbps"].as_f64().unwrap() > 0.0);
        assert!(r["model_type"].as_str().unwrap().contains("Q8_0"), "{r}");
        let is_tg = r["n_gen"].as_u64().unwrap() > 0;
        assert_eq!(r["pct_of_bandwidth"].is_number(), is_tg, "{r}");
    }
    assert!(err.contains("peak RSS"), "{err}");
}

#[test]
fn markdown_table_has_the_columns_and_a_row_per_test() {
    let o = herd(TINY);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("GB/s"), "{out}");
    let table: Vec<&str> = out.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(table.len(), 2 + 4, "{out}");
    for col in [
        "model", "size", "params", "backend", "threads", "test", "t/s", "% bw",
    ] {
        assert!(table[0].contains(col), "{col} not in {}", table[0]);
    }
    assert!(
        table[2].contains("pp8") && table[3].contains("tg4"),
        "{out}"
    );
}

#[test]
fn depths_run_each_test_after_a_context() {
    let args = [TINY, &["-d", "0,100", "--output", "json"]].concat();
    let o = herd(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rows: Value = serde_json::from_slice(&o.stdout).expect("stdout is one JSON document");
    let got: Vec<(String, u64)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["test"].as_str().unwrap().to_string(),
                r["n_depth"].as_u64().unwrap(),
            )
        })
        .collect();
    let one = [
        ("pp8", 0),
        ("pp8 @ d100", 100),
        ("tg4", 0),
        ("tg4 @ d100", 100),
    ];
    let want: Vec<(String, u64)> = [one, one]
        .concat()
        .into_iter()
        .map(|(t, d)| (t.to_string(), d))
        .collect();
    assert_eq!(got, want, "{rows}");
    // Decode at depth reads the KV cache of 100 positions and more on top of the weights.
    let kv = |i: usize| rows[i]["kv_bytes_per_token"].as_f64().unwrap();
    assert!(kv(3) > kv(2) && kv(2) > 0.0, "{rows}");
    // Past the model's 256 positions the context is raised for the tests, as llama-bench
    // sizes its context to them.
    let deep = [TINY, &["-d", "300"]].concat();
    let o = herd(&deep);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("context raised from 256 to 308"), "{err}");
}

#[test]
fn bad_names_give_one_error_line() {
    for (args, needle) in [
        (&["--synthetic", "llama9", "--type", "q8_0"][..], "llama9"),
        (
            &["--synthetic", "stories15m", "--type", "q3"][..],
            "q8_0, q4_0",
        ),
    ] {
        let o = herd(&[&["bench"][..], args].concat());
        let err = text(&o.stderr);
        assert!(!o.status.success(), "{err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "one error line expected: {err}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(needle),
            "{err}"
        );
    }
}
