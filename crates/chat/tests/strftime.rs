//! The crate's `strftime` against Python's `datetime.strftime` for fixed times.

mod common;

use chat::strftime::{strftime, DateTime};

#[test]
fn strftime_matches_python() {
    let doc = common::expected();
    let mut failures = Vec::new();
    let mut checked = 0;
    for entry in doc["strftime"].as_array().expect("strftime") {
        let f: Vec<i64> = entry["time"]
            .as_array()
            .expect("time")
            .iter()
            .map(|v| v.as_i64().expect("int"))
            .collect();
        let t = DateTime {
            year: f[0],
            month: f[1] as u32,
            day: f[2] as u32,
            hour: f[3] as u32,
            minute: f[4] as u32,
            second: f[5] as u32,
            microsecond: f[6] as u32,
        };
        for (format, want) in entry["formats"].as_object().expect("formats") {
            checked += 1;
            let got = strftime(format, &t);
            if got != want.as_str().expect("str") {
                failures.push(format!("{t:?} {format:?}: want {want}, got {got:?}"));
            }
        }
    }
    assert!(checked > 100, "only {checked} checks");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn strftime_now_formats_the_current_time() {
    let template = chat::ChatTemplate::new("{{ strftime_now('%Y-%m-%d') }}", "inline").unwrap();
    let text = template.render(&chat::RenderContext::default()).unwrap();
    assert_eq!(text.len(), 10, "{text}");
    let year: i64 = text[..4].parse().unwrap();
    assert!(year >= 2024, "{text}");
}

#[test]
fn strftime_now_can_be_pinned() {
    let template = chat::ChatTemplate::new(
        "{{ strftime_now('%d %b %Y') }}|{{ strftime_now_fixed }}",
        "inline",
    )
    .unwrap();
    let mut ctx = chat::RenderContext::default();
    ctx.extra
        .insert(chat::STRFTIME_NOW_FIXED.into(), "26 Jul 2024".into());
    assert_eq!(template.render(&ctx).unwrap(), "26 Jul 2024|");
}
