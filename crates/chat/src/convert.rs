//! JSON values into template values, keeping object key order.

use minijinja::value::Value;

/// Converts a `serde_json` value: `null` becomes `none`, numbers stay integers when they
/// are, objects keep their key order.
pub fn to_value(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => {
            Value::from(items.iter().map(to_value).collect::<Vec<_>>())
        }
        serde_json::Value::Object(fields) => {
            Value::from_pairs(fields.iter().map(|(k, v)| (k.as_str(), to_value(v))))
        }
    }
}
