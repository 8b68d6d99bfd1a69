//! The `tojson` filter as transformers defines it: Python's `json.dumps`.
//!
//! transformers replaces Jinja2's own `tojson` (which escapes `<`, `>`, `&` and `'` for
//! HTML) with `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
//! sort_keys=False)`. So the output has Python's default separators (`", "` and `": "`,
//! or `","` and `": "` with an indent), Python's float text, and no HTML escaping.

use minijinja::value::{Kwargs, Rest, Value, ValueKind, ValueOrKwargs};
use minijinja::{Error, ErrorKind};

use crate::pyrepr::py_float;

/// The options of `json.dumps` that the filter accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonOptions {
    /// Escape every non-ASCII character as `\uXXXX`.
    pub ensure_ascii: bool,
    /// Pretty-print with this string per level (`None`: one line).
    pub indent: Option<String>,
    /// Between items.
    pub item_separator: String,
    /// Between a key and its value.
    pub key_separator: String,
    /// Write object keys sorted.
    pub sort_keys: bool,
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions {
            ensure_ascii: false,
            indent: None,
            item_separator: ", ".to_string(),
            key_separator: ": ".to_string(),
            sort_keys: false,
        }
    }
}

/// The filter: `value|tojson(ensure_ascii=false, indent=none, separators=none, sort_keys=false)`,
/// the options also accepted positionally in that order.
pub fn tojson_filter(value: &Value, args: Rest<ValueOrKwargs>) -> Result<String, Error> {
    let mut positional: Vec<Value> = args.into_values();
    let kwargs = match positional.last() {
        Some(last) if last.is_kwargs() => Kwargs::try_from(positional.pop().unwrap_or_default())?,
        _ => Kwargs::from_iter(std::iter::empty::<(&str, Value)>()),
    };
    if positional.len() > 4 {
        return Err(Error::new(
            ErrorKind::TooManyArguments,
            format!("tojson takes at most 4 options, got {}", positional.len()),
        ));
    }
    let mut positional = positional.into_iter();
    let mut pick = |name: &str| -> Result<Option<Value>, Error> {
        let named: Option<Value> = kwargs.get(name)?;
        Ok(named.or(positional.next()))
    };
    let ensure_ascii = pick("ensure_ascii")?;
    let indent = pick("indent")?;
    let separators = pick("separators")?;
    let sort_keys = pick("sort_keys")?;
    kwargs.assert_all_used()?;

    let mut opts = JsonOptions {
        ensure_ascii: ensure_ascii.is_some_and(|v| v.is_true()),
        sort_keys: sort_keys.is_some_and(|v| v.is_true()),
        ..JsonOptions::default()
    };
    match indent {
        None => {}
        Some(v) if v.is_none() || v.is_undefined() => {}
        Some(v) => {
            opts.indent = Some(indent_text(&v)?);
            opts.item_separator = ",".to_string();
        }
    }
    if let Some(seps) = separators.filter(|v| !v.is_none() && !v.is_undefined()) {
        let parts: Vec<Value> = seps.try_iter()?.collect();
        match parts.as_slice() {
            [item, key] if item.as_str().is_some() && key.as_str().is_some() => {
                opts.item_separator = item.as_str().unwrap_or_default().to_string();
                opts.key_separator = key.as_str().unwrap_or_default().to_string();
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: separators must be two strings, got {seps}"),
                ))
            }
        }
    }
    dumps(value, &opts)
}

/// The largest integer indent accepted (Python has no limit; this only stops a template
/// from asking for gigabytes of spaces).
const MAX_INDENT: i64 = 1024;

/// Python's rule: an integer indent means that many spaces, a string is used as-is.
fn indent_text(v: &Value) -> Result<String, Error> {
    if let Some(s) = v.as_str() {
        return Ok(s.to_string());
    }
    match i64::try_from(v.clone()) {
        Ok(n) if n > MAX_INDENT => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson: indent {n} is larger than {MAX_INDENT}"),
        )),
        Ok(n) => Ok(" ".repeat(n.max(0) as usize)),
        Err(_) => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson: indent must be an integer or a string, got {v}"),
        )),
    }
}

/// Serializes `value` as Python's `json.dumps` would with these options.
pub fn dumps(value: &Value, opts: &JsonOptions) -> Result<String, Error> {
    let mut out = String::new();
    write_value(&mut out, value, opts, 0)?;
    Ok(out)
}

fn not_serializable(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("tojson: object of type {what} is not JSON serializable"),
    )
}

fn write_value(out: &mut String, v: &Value, opts: &JsonOptions, level: usize) -> Result<(), Error> {
    match v.kind() {
        ValueKind::Undefined => return Err(not_serializable("Undefined")),
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&json_number(v)),
        ValueKind::String => write_string(out, v.as_str().unwrap_or_default(), opts.ensure_ascii),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            write_container(out, '[', ']', items.len(), opts, level, |out, i| {
                write_value(out, &items[i], opts, level + 1)
            })?;
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in v.try_iter()? {
                let value = v.get_item(&key)?;
                entries.push((json_key(&key)?, value));
            }
            if opts.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            write_container(out, '{', '}', entries.len(), opts, level, |out, i| {
                write_string(out, &entries[i].0, opts.ensure_ascii);
                out.push_str(&opts.key_separator);
                write_value(out, &entries[i].1, opts, level + 1)
            })?;
        }
        other => return Err(not_serializable(&other.to_string())),
    }
    Ok(())
}

/// Writes `open item sep item ... close`, with Python's newline-and-indent layout when an
/// indent is set (an empty container stays `[]` / `{}`).
fn write_container(
    out: &mut String,
    open: char,
    close: char,
    len: usize,
    opts: &JsonOptions,
    level: usize,
    mut item: impl FnMut(&mut String, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if len == 0 {
        out.push(close);
        return Ok(());
    }
    let inner = opts
        .indent
        .as_ref()
        .map(|ind| format!("\n{}", ind.repeat(level + 1)));
    for i in 0..len {
        if i > 0 {
            out.push_str(&opts.item_separator);
        }
        if let Some(nl) = &inner {
            out.push_str(nl);
        }
        item(out, i)?;
    }
    if let Some(ind) = &opts.indent {
        out.push('\n');
        out.push_str(&ind.repeat(level));
    }
    out.push(close);
    Ok(())
}

/// Python's `json.dumps` of a number: integers as-is, floats as `float.__repr__`, and
/// `NaN` / `Infinity` / `-Infinity` for the non-finite ones.
fn json_number(v: &Value) -> String {
    if v.is_integer() {
        return v.to_string();
    }
    match f64::try_from(v.clone()) {
        Ok(f) if f.is_nan() => "NaN".to_string(),
        Ok(f) if f.is_infinite() => if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string(),
        Ok(f) => py_float(f),
        Err(_) => v.to_string(),
    }
}

/// Python converts `str`, `int`, `float`, `bool` and `None` keys to strings; others fail.
fn json_key(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::Number => Ok(json_number(key)),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_string()),
        ValueKind::None => Ok("null".to_string()),
        other => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson: keys must be str, int, float, bool or None, not {other}"),
        )),
    }
}

/// A JSON string as Python writes it: `\" \\ \n \r \t \b \f` by name, other control
/// characters as `\u00XX` (lowercase hex); with `ensure_ascii`, also everything outside
/// `' '..='~'`, using surrogate pairs above the BMP.
fn write_string(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if ensure_ascii && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{:04x}", unit));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_layout() {
        let v = Value::from_pairs([
            ("a", Value::from(vec![Value::from(1), Value::from(2.0)])),
            ("b", Value::from_pairs::<_, &str, Value>([])),
        ]);
        assert_eq!(
            dumps(&v, &JsonOptions::default()).ok().as_deref(),
            Some(r#"{"a": [1, 2.0], "b": {}}"#)
        );
        let pretty = JsonOptions {
            indent: Some("  ".into()),
            item_separator: ",".into(),
            ..JsonOptions::default()
        };
        assert_eq!(
            dumps(&v, &pretty).ok().as_deref(),
            Some("{\n  \"a\": [\n    1,\n    2.0\n  ],\n  \"b\": {}\n}")
        );
    }

    #[test]
    fn strings_escape_like_python() {
        let v = Value::from("<é>\u{1}\"🦙");
        assert_eq!(
            dumps(&v, &JsonOptions::default()).ok().as_deref(),
            Some("\"<é>\\u0001\\\"🦙\"")
        );
        let ascii = JsonOptions {
            ensure_ascii: true,
            ..JsonOptions::default()
        };
        assert_eq!(
            dumps(&v, &ascii).ok().as_deref(),
            Some("\"<\\u00e9>\\u0001\\\"\\ud83e\\udd99\"")
        );
    }
}
