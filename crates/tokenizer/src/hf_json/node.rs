//! Walking a parsed JSON document while keeping the path of each value, so every error can
//! say where it is (`pre_tokenizer.pretokenizers[0].pattern`).

use serde_json::Value;

use crate::error::TokenizerError;

/// A JSON value and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    pub(crate) value: &'a Value,
    pub(crate) path: String,
    origin: &'a str,
}

impl<'a> Node<'a> {
    /// The document root; `origin` names the file in errors.
    pub(crate) fn root(value: &'a Value, origin: &'a str) -> Self {
        Self {
            value,
            path: String::new(),
            origin,
        }
    }

    /// An error about this value.
    pub(crate) fn error(&self, what: impl Into<String>) -> TokenizerError {
        TokenizerError::Json {
            origin: self.origin.to_string(),
            path: self.path.clone(),
            what: what.into(),
        }
    }

    fn child(&self, value: &'a Value, path: String) -> Self {
        Self {
            value,
            path,
            origin: self.origin,
        }
    }

    /// Member `key` of an object; `None` when absent or null (or when this is no object).
    pub(crate) fn get(&self, key: &str) -> Option<Node<'a>> {
        let v = self.value.get(key)?;
        if v.is_null() {
            return None;
        }
        let path = if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        };
        Some(self.child(v, path))
    }

    /// Member `key`, which must be there.
    pub(crate) fn req(&self, key: &str) -> Result<Node<'a>, TokenizerError> {
        if !self.value.is_object() {
            return Err(self.error(format!("expected an object, found {}", kind(self.value))));
        }
        self.get(key)
            .ok_or_else(|| self.error(format!("missing {key:?}")))
    }

    /// The elements of an array.
    pub(crate) fn items(&self) -> Result<Vec<Node<'a>>, TokenizerError> {
        let arr = self
            .value
            .as_array()
            .ok_or_else(|| self.error(format!("expected an array, found {}", kind(self.value))))?;
        Ok(arr
            .iter()
            .enumerate()
            .map(|(i, v)| self.child(v, format!("{}[{i}]", self.path)))
            .collect())
    }

    /// The members of an object, in file order.
    pub(crate) fn members(&self) -> Result<Vec<(&'a str, Node<'a>)>, TokenizerError> {
        let obj = self
            .value
            .as_object()
            .ok_or_else(|| self.error(format!("expected an object, found {}", kind(self.value))))?;
        Ok(obj
            .iter()
            .map(|(k, v)| (k.as_str(), self.child(v, format!("{}[{k:?}]", self.path))))
            .collect())
    }

    /// A string.
    pub(crate) fn str(&self) -> Result<&'a str, TokenizerError> {
        self.value
            .as_str()
            .ok_or_else(|| self.error(format!("expected a string, found {}", kind(self.value))))
    }

    /// A token id.
    pub(crate) fn id(&self) -> Result<u32, TokenizerError> {
        self.value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| self.error(format!("expected a 32-bit token id, found {}", self.value)))
    }

    /// Boolean member `key`, `default` when absent or null.
    pub(crate) fn flag(&self, key: &str, default: bool) -> Result<bool, TokenizerError> {
        match self.get(key) {
            None => Ok(default),
            Some(n) => n
                .value
                .as_bool()
                .ok_or_else(|| n.error(format!("expected true or false, found {}", n.value))),
        }
    }

    /// The `type` member of a component (`"ByteLevel"`, `"Sequence"`).
    pub(crate) fn type_name(&self) -> Result<&'a str, TokenizerError> {
        self.req("type")?.str()
    }
}

/// A short name of a JSON value's kind.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
