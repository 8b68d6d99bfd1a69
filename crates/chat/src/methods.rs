//! Python string methods where Python's idea of whitespace matters.
//!
//! minijinja-contrib's `pycompat` supplies the Python methods templates call on strings,
//! dicts and lists (`strip`, `split`, `startswith`, `items`, `get`, ...). Its `strip`
//! family and `split()` use Rust's whitespace, which lacks the four ASCII separators
//! `\x1c`..`\x1f` that Python's `str.isspace` includes; those methods are done here.

use minijinja::value::{from_args, Value, ValueKind};
use minijinja::{Error, State};

/// Python's `str.isspace` for one character.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Which end(s) of a string to strip.
#[derive(Clone, Copy)]
pub enum Ends {
    Both,
    Start,
    End,
}

/// Python's `str.strip(chars)` / `lstrip` / `rstrip`; `chars = None` means whitespace.
pub fn py_strip(s: &str, chars: Option<&str>, ends: Ends) -> String {
    let strip = |c: char| match chars {
        Some(set) => set.contains(c),
        None => is_py_space(c),
    };
    match ends {
        Ends::Both => s.trim_matches(strip),
        Ends::Start => s.trim_start_matches(strip),
        Ends::End => s.trim_end_matches(strip),
    }
    .to_string()
}

/// Python's `str.split()` without a separator: runs of whitespace split, and no empty
/// strings come out; at most `maxsplit` splits when it is given and not negative.
fn py_split_whitespace(s: &str, maxsplit: Option<i64>) -> Vec<Value> {
    let mut parts = Vec::new();
    let mut rest = s.trim_start_matches(is_py_space);
    while !rest.is_empty() {
        if maxsplit.is_some_and(|m| m >= 0 && parts.len() as i64 >= m) {
            parts.push(Value::from(rest));
            break;
        }
        let end = rest.find(is_py_space).unwrap_or(rest.len());
        parts.push(Value::from(&rest[..end]));
        rest = rest[end..].trim_start_matches(is_py_space);
    }
    parts
}

/// The unknown-method callback: the methods above, then `pycompat` for everything else.
pub fn unknown_method_callback(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if value.kind() == ValueKind::String {
        let s = value.as_str().unwrap_or_default();
        let ends = match method {
            "strip" => Some(Ends::Both),
            "lstrip" => Some(Ends::Start),
            "rstrip" => Some(Ends::End),
            _ => None,
        };
        if let Some(ends) = ends {
            let (chars,): (Option<Value>,) = from_args(args)?;
            let chars = chars.filter(|c| !c.is_none());
            let chars = chars.as_ref().map(|c| c.as_str().unwrap_or_default());
            return Ok(Value::from(py_strip(s, chars, ends)));
        }
        if method == "split" {
            let (sep, maxsplit): (Option<Value>, Option<i64>) = from_args(args)?;
            let no_sep = match &sep {
                Some(v) => v.is_none(),
                None => true,
            };
            if no_sep {
                return Ok(Value::from(py_split_whitespace(s, maxsplit)));
            }
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace() {
        assert_eq!(py_strip("\u{1c} x \u{3000}", None, Ends::Both), "x");
        assert_eq!(py_strip("xxhixx", Some("x"), Ends::Start), "hixx");
        let parts = py_split_whitespace("  a\tb  c ", Some(1));
        assert_eq!(parts, vec![Value::from("a"), Value::from("b  c ")]);
    }
}
