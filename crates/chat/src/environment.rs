//! The Jinja environment transformers renders chat templates in, rebuilt on minijinja.
//!
//! transformers (`utils/chat_template_utils.py`, `_compile_jinja_template`) uses Jinja2's
//! `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
//! extensions=[AssistantTracker, loopcontrols])` with the default `Undefined` and
//! `keep_trailing_newline=False`, and adds the filter `tojson` and the globals
//! `raise_exception`, `strftime_now`, `dict` and `namespace`. Here:
//!
//! * syntax: the same whitespace options; `break`/`continue`; `{% generation %}` (see
//!   [`crate::preprocess`]);
//! * undefined values: minijinja's lenient mode, which is Jinja2's `Undefined` (printing
//!   gives `""`, iterating gives nothing, an attribute *of* an undefined value is an error);
//! * output: values print as Python's `str()` (`None`, `True`, `1e+20`, `['a', 1]`), and
//!   the `string`, `join`, `trim` and `attr` filters follow Python/Jinja2 too;
//! * `tojson`: Python's `json.dumps` (see [`crate::tojson`]);
//! * `raise_exception(msg)`: fails the render with [`crate::ChatError::Raised`];
//! * `strftime_now(format)`: see [`crate::strftime`] and [`crate::STRFTIME_NOW_FIXED`];
//! * `dict(...)`, `namespace(...)`, `range(...)`: minijinja's built-ins; `cycler`, `joiner` and the
//!   filters `truncate`, `striptags`, `filesizeformat`: minijinja-contrib's;
//! * Python methods on strings, dicts and lists: minijinja-contrib's `pycompat`, with the
//!   whitespace-sensitive ones in [`crate::methods`].

use std::fmt::Write as _;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior};

use crate::methods::{py_strip, unknown_method_callback, Ends};
use crate::pyrepr::py_str;
use crate::strftime::{strftime, DateTime};
use crate::tojson::tojson_filter;

/// The template variable that carries a pinned `strftime_now` result into a render.
pub(crate) const FIXED_NOW_VAR: &str = "__chat_template_strftime_now_fixed";

/// The error `raise_exception` fails with; found again in the error chain after rendering.
#[derive(Debug)]
pub(crate) struct Raised(pub String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

/// A fresh environment configured as described in the module documentation.
pub(crate) fn environment() -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()?,
    );
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_debug(false);
    env.set_formatter(|out, _state, value| out.write_str(&py_str(value)).map_err(Error::from));
    env.set_unknown_method_callback(unknown_method_callback);

    env.add_filter("tojson", tojson_filter);
    env.add_filter("trim", trim);
    env.add_filter("string", |v: &Value| py_str(v));
    env.add_filter("join", join);
    env.add_filter("attr", attr);
    env.add_filter("wordcount", wordcount);
    env.add_filter("center", center);
    env.add_filter("truncate", minijinja_contrib::filters::truncate);
    env.add_filter("striptags", minijinja_contrib::filters::striptags);
    env.add_filter("filesizeformat", minijinja_contrib::filters::filesizeformat);
    env.add_function("cycler", minijinja_contrib::globals::cycler);
    env.add_function("joiner", minijinja_contrib::globals::joiner);
    env.add_test("sequence", is_sequence);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    Ok(env)
}

/// `raise_exception(msg)`: Jinja2's `TemplateError(msg)`.
fn raise_exception(msg: Value) -> Result<Value, Error> {
    let msg = py_str(&msg);
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("raise_exception: {msg}"),
    )
    .with_source(Raised(msg)))
}

/// `strftime_now(format)`: the pinned text if the render has one, else the UTC time.
fn strftime_now(state: &State, format: &str) -> String {
    match state.lookup(FIXED_NOW_VAR) {
        Some(fixed) if fixed.kind() == ValueKind::String => py_str(&fixed),
        _ => strftime(format, &DateTime::now_utc()),
    }
}

/// Jinja2's `trim(value, chars=None)`: `str(value).strip(chars)`.
fn trim(value: &Value, chars: Option<Value>) -> String {
    let chars = chars.filter(|c| !c.is_none() && !c.is_undefined());
    let chars = chars.as_ref().map(py_str);
    py_strip(&py_str(value), chars.as_deref(), Ends::Both)
}

/// Jinja2's `join(value, d='', attribute=None)`, with items printed as Python's `str()`.
fn join(value: &Value, sep: Option<String>, attribute: Option<String>) -> Result<String, Error> {
    if value.is_undefined() || value.is_none() {
        return Ok(String::new());
    }
    let mut out = String::new();
    for (i, item) in value.try_iter()?.enumerate() {
        if i > 0 {
            out.push_str(sep.as_deref().unwrap_or(""));
        }
        let item = match &attribute {
            Some(path) => lookup_path(&item, path)?,
            None => item,
        };
        let _ = write!(out, "{}", py_str(&item));
    }
    Ok(out)
}

/// Jinja2's attribute path (`"a.b.0"`): each part is an item lookup, digits index lists.
fn lookup_path(value: &Value, path: &str) -> Result<Value, Error> {
    let mut cur = value.clone();
    for part in path.split('.') {
        cur = match part.parse::<i64>() {
            Ok(i) => cur.get_item(&Value::from(i))?,
            Err(_) => cur.get_item(&Value::from(part))?,
        };
    }
    Ok(cur)
}

/// Jinja2's `attr(obj, name)` reads a Python attribute only, never an item: on data
/// (mappings, lists, strings, numbers) it is undefined. Objects such as a namespace
/// answer with their attribute.
fn attr(value: &Value, name: &str) -> Result<Value, Error> {
    match value.kind() {
        ValueKind::Plain => value.get_attr(name),
        _ => Ok(Value::UNDEFINED),
    }
}

/// Jinja2's `wordcount`: the number of runs of word characters (`\w+`).
fn wordcount(value: &Value) -> usize {
    let text = py_str(value);
    let mut count = 0;
    let mut in_word = false;
    for c in text.chars() {
        let word = c.is_alphanumeric() || c == '_';
        if word && !in_word {
            count += 1;
        }
        in_word = word;
    }
    count
}

/// The widest `center` accepted (only stops a template from asking for gigabytes).
const MAX_CENTER_WIDTH: usize = 1 << 16;

/// Jinja2's `center(value, width=80)`: Python's `str.center`.
fn center(value: &Value, width: Option<usize>) -> Result<String, Error> {
    let text = py_str(value);
    let width = width.unwrap_or(80);
    if width > MAX_CENTER_WIDTH {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("center: width {width} is larger than {MAX_CENTER_WIDTH}"),
        ));
    }
    let len = text.chars().count();
    if width <= len {
        return Ok(text);
    }
    let pad = width - len;
    let left = pad / 2 + (pad & width & 1);
    Ok(format!(
        "{}{text}{}",
        " ".repeat(left),
        " ".repeat(pad - left)
    ))
}

/// Jinja2's `sequence` test: anything with a length and items (strings, lists and
/// mappings, and also undefined values).
fn is_sequence(value: &Value) -> bool {
    matches!(
        value.kind(),
        ValueKind::String
            | ValueKind::Seq
            | ValueKind::Map
            | ValueKind::Iterable
            | ValueKind::Undefined
    )
}
