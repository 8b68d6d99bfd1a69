//! What a template is rendered with, and the message clean-up transformers does first.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The key of [`RenderContext::extra`] that pins `strftime_now`: when present (a string),
/// `strftime_now(format)` returns it unchanged, whatever the format. It is not passed to the
/// template as a variable. Meant for reproducible output (tests, fixtures).
pub const STRFTIME_NOW_FIXED: &str = "strftime_now_fixed";

/// Everything a chat template sees.
///
/// The template variables are `messages`, `add_generation_prompt`, `bos_token`,
/// `eos_token`, `tools` (`none` when absent, as transformers passes it), `documents`
/// (always `none`), and every entry of `extra` (for example `date_string`,
/// `tools_in_user_message`, `builtin_tools`). An `extra` entry with the name of a
/// fixed variable replaces it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RenderContext {
    /// The conversation: objects with `role` and `content`, and whatever else the template
    /// reads (`tool_calls`, `tool_call_id`, `name`, ...). Passed through as-is, except as
    /// described in [`normalize_messages`].
    pub messages: Vec<Value>,
    /// Whether to end with the header that starts the assistant's reply.
    pub add_generation_prompt: bool,
    /// The tokenizer's BOS token text, e.g. `<s>` or `<|begin_of_text|>`.
    pub bos_token: String,
    /// The tokenizer's EOS token text, e.g. `</s>` or `<|eot_id|>`.
    pub eos_token: String,
    /// Tool (function) definitions, usually a list of JSON schemas.
    pub tools: Option<Value>,
    /// Further template variables. See also [`STRFTIME_NOW_FIXED`].
    pub extra: Map<String, Value>,
}

impl RenderContext {
    /// A context with `messages` and everything else empty or off.
    pub fn new(messages: Vec<Value>) -> Self {
        RenderContext {
            messages,
            ..RenderContext::default()
        }
    }
}

/// The names a message's reasoning can come under; the first is the one templates read.
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// Prepares messages the way transformers' `apply_chat_template` does before rendering.
///
/// * In every message that is an object, keys whose value is `null` are dropped (an API's
///   `content: null` becomes a missing `content`).
/// * If a message has reasoning under `reasoning_content`, `thinking` or `reasoning` (first
///   non-null in that order), it is copied to both `thinking` and `reasoning_content`. As in
///   Python's `{"thinking": r, **message, "reasoning_content": r}`, a new `thinking` comes
///   first and a new `reasoning_content` last.
///
/// Messages that are not objects are passed through unchanged.
pub fn normalize_messages(messages: &[Value]) -> Vec<Value> {
    messages.iter().map(normalize_message).collect()
}

fn normalize_message(message: &Value) -> Value {
    let Value::Object(fields) = message else {
        return message.clone();
    };
    let kept: Map<String, Value> = fields
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let reasoning = REASONING_FIELDS.iter().find_map(|k| kept.get(*k)).cloned();
    let Some(reasoning) = reasoning else {
        return Value::Object(kept);
    };
    let mut out = Map::new();
    out.insert("thinking".to_string(), reasoning.clone());
    for (k, v) in kept {
        // Inserting an existing key keeps its position, as a Python dict does.
        out.insert(k, v);
    }
    out.insert("reasoning_content".to_string(), reasoning);
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nulls_are_dropped() {
        let m = normalize_messages(&[json!({"role": "assistant", "content": null, "x": 1})]);
        assert_eq!(m, vec![json!({"role": "assistant", "x": 1})]);
    }

    #[test]
    fn reasoning_is_aliased_in_python_dict_order() {
        let m =
            normalize_messages(&[json!({"role": "assistant", "content": "a", "reasoning": "r"})]);
        let keys: Vec<&str> = m[0]
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            [
                "thinking",
                "role",
                "content",
                "reasoning",
                "reasoning_content"
            ]
        );
    }
}
