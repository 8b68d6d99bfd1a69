//! Finding the chat template in a `tokenizer_config.json`.

use serde_json::Value;

use crate::error::ChatError;
use crate::template::ChatTemplate;

/// The template of a parsed `tokenizer_config.json`, compiled; `Ok(None)` when it has no
/// `chat_template` (missing or `null`).
///
/// `chat_template` is either the source itself or a list of `{"name", "template"}`
/// entries, of which the one named `default` is taken (as transformers does when no name
/// is asked for and no tools are given). `origin` names the file in errors; the template's
/// own origin becomes `"{origin} chat_template"` (or `... chat_template 'default'`).
pub fn from_tokenizer_config(
    json: &Value,
    origin: &str,
) -> Result<Option<ChatTemplate>, ChatError> {
    let config = |detail: String| ChatError::Config {
        origin: origin.to_string(),
        detail,
    };
    let Value::Object(fields) = json else {
        return Err(config(format!(
            "expected a JSON object at the top level, found {}",
            kind(json)
        )));
    };
    match fields.get("chat_template") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(source)) => {
            ChatTemplate::new(source, &format!("{origin} chat_template")).map(Some)
        }
        Some(Value::Array(entries)) => {
            let mut names = Vec::new();
            for (i, entry) in entries.iter().enumerate() {
                let name = entry.get("name").and_then(Value::as_str);
                let source = entry.get("template").and_then(Value::as_str);
                let (Some(name), Some(source)) = (name, source) else {
                    return Err(config(format!(
                        "chat_template[{i}] must be an object with string 'name' and 'template', found {}",
                        kind(entry)
                    )));
                };
                if name == "default" {
                    let origin = format!("{origin} chat_template '{name}'");
                    return ChatTemplate::new(source, &origin).map(Some);
                }
                names.push(name.to_string());
            }
            Err(config(format!(
                "chat_template lists {} named templates and none is named 'default' (names: {})",
                names.len(),
                names.join(", ")
            )))
        }
        Some(other) => Err(config(format!(
            "chat_template must be a string or a list of {{name, template}} objects, found {}",
            kind(other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
