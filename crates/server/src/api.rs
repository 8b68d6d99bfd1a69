//! OpenAI request bodies, parsed strictly (a wrong type is a 400 naming the field), and their
//! checks: ranges, counts and the options herd does not offer.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;

/// A string or a list of strings (`stop`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

/// A completion prompt: text, texts, token ids, or lists of token ids.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
    Texts(Vec<String>),
    IdLists(Vec<Vec<u32>>),
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// POST /v1/completions.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: Prompt,
    pub max_tokens: Option<u32>,
    /// Parsed in a second pass ([`parse_request`]) so errors keep the field's name.
    #[serde(skip)]
    pub common: Common,
    /// Number of most likely tokens to report per position (0..=20).
    pub logprobs: Option<u32>,
    pub echo: Option<bool>,
    pub best_of: Option<u32>,
    pub suffix: Option<String>,
}

/// POST /v1/chat/completions.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    /// Parsed in a second pass ([`parse_request`]) so errors keep the field's name.
    #[serde(skip)]
    pub common: Common,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
    pub tools: Option<Value>,
}

/// Fields both endpoints share.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Common {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub n: Option<u32>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub stop: Option<StringOrList>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub logit_bias: Option<serde_json::Map<String, Value>>,
    /// Accepted for compatibility; not used.
    #[allow(dead_code)]
    pub user: Option<String>,
    /// Extensions as in llama-server and vLLM.
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: Option<MessageContent>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

/// POST /tokenize: `content` (llama-server) or `prompt` (vLLM).
#[derive(Debug, Clone, Deserialize)]
pub struct TokenizeRequest {
    pub model: Option<String>,
    pub content: Option<String>,
    pub prompt: Option<String>,
    pub add_special: Option<bool>,
}

/// POST /detokenize.
#[derive(Debug, Clone, Deserialize)]
pub struct DetokenizeRequest {
    pub model: Option<String>,
    pub tokens: Vec<u32>,
}

/// Parses a JSON body; errors name the field, as OpenAI's do.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid(format!("the body is not valid JSON: {inner}"), None)
        } else if path == "." {
            ApiError::invalid(format!("invalid request body: {inner}"), None)
        } else {
            ApiError::invalid(format!("invalid value for '{path}': {inner}"), Some(&path))
        }
    })
}

/// A request with the shared fields.
pub trait WithCommon {
    fn set_common(&mut self, c: Common);
}

impl WithCommon for CompletionRequest {
    fn set_common(&mut self, c: Common) {
        self.common = c;
    }
}

impl WithCommon for ChatRequest {
    fn set_common(&mut self, c: Common) {
        self.common = c;
    }
}

/// Parses a completion or chat body: its own fields, then the shared ones.
pub fn parse_request<T: DeserializeOwned + WithCommon>(body: &[u8]) -> Result<T, ApiError> {
    let mut req: T = parse(body)?;
    req.set_common(parse(body)?);
    Ok(req)
}

/// Sampling and output settings after the checks.
#[derive(Debug, Clone, PartialEq)]
pub struct GenParams {
    pub n: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: usize,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// The base seed; choice `i` of a prompt uses `seed + i`. `None`: drawn per request.
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
}

/// Most stop strings per request (as OpenAI).
pub const MAX_STOP: usize = 4;
/// Most alternatives reported per position (as OpenAI).
pub const MAX_TOP_LOGPROBS: u32 = 20;

fn range(v: Option<f32>, lo: f32, hi: f32, default: f32, name: &str) -> Result<f32, ApiError> {
    match v {
        None => Ok(default),
        Some(x) if x.is_finite() && x >= lo && x <= hi => Ok(x),
        Some(x) => Err(ApiError::invalid(
            format!("'{name}' must be between {lo} and {hi}, got {x}"),
            Some(name),
        )),
    }
}

impl Common {
    /// Checks every shared field; `max_n` is the most choices per request.
    pub fn check(&self, max_n: usize) -> Result<GenParams, ApiError> {
        let n = self.n.unwrap_or(1) as usize;
        if n == 0 || n > max_n {
            return Err(ApiError::invalid(
                format!("'n' must be between 1 and {max_n}, got {n}"),
                Some("n"),
            ));
        }
        let temperature = range(self.temperature, 0.0, 2.0, 1.0, "temperature")?;
        let top_p = range(self.top_p, 0.0, 1.0, 1.0, "top_p")?;
        if top_p == 0.0 {
            return Err(ApiError::invalid("'top_p' must be above 0", Some("top_p")));
        }
        let min_p = range(self.min_p, 0.0, 1.0, 0.0, "min_p")?;
        let presence_penalty = range(self.presence_penalty, -2.0, 2.0, 0.0, "presence_penalty")?;
        let frequency_penalty = range(self.frequency_penalty, -2.0, 2.0, 0.0, "frequency_penalty")?;
        let repeat_penalty = range(
            self.repetition_penalty,
            0.01,
            10.0,
            1.0,
            "repetition_penalty",
        )?;
        let top_k = match self.top_k {
            None => 0,
            Some(k) if k <= 0 => 0,
            Some(k) => k as usize,
        };
        let stop = match &self.stop {
            None => Vec::new(),
            Some(StringOrList::One(s)) => vec![s.clone()],
            Some(StringOrList::Many(v)) => v.clone(),
        };
        if stop.len() > MAX_STOP {
            return Err(ApiError::invalid(
                format!(
                    "'stop' takes at most {MAX_STOP} strings, got {}",
                    stop.len()
                ),
                Some("stop"),
            ));
        }
        if stop.iter().any(String::is_empty) {
            return Err(ApiError::invalid(
                "'stop' strings must not be empty",
                Some("stop"),
            ));
        }
        if self.logit_bias.as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(ApiError::invalid(
                "'logit_bias' is not supported",
                Some("logit_bias"),
            ));
        }
        let stream = self.stream.unwrap_or(false);
        if self.stream_options.is_some() && !stream {
            return Err(ApiError::invalid(
                "'stream_options' is only allowed when 'stream' is true",
                Some("stream_options"),
            ));
        }
        let include_usage = self
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        Ok(GenParams {
            n,
            temperature,
            top_p,
            top_k,
            min_p,
            repeat_penalty,
            presence_penalty,
            frequency_penalty,
            seed: self.seed.map(|s| s as u64),
            stop,
            stream,
            include_usage,
        })
    }
}

impl CompletionRequest {
    /// The number of alternatives to report per position, when asked for.
    pub fn check_extra(&self) -> Result<Option<usize>, ApiError> {
        if self.echo == Some(true) {
            return Err(ApiError::invalid("'echo' is not supported", Some("echo")));
        }
        if self.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::invalid(
                "'suffix' is not supported",
                Some("suffix"),
            ));
        }
        let n = self.common.n.unwrap_or(1);
        if let Some(b) = self.best_of {
            if b != n {
                return Err(ApiError::invalid(
                    "'best_of' other than 'n' is not supported",
                    Some("best_of"),
                ));
            }
        }
        if self.max_tokens == Some(0) {
            return Err(ApiError::invalid(
                "'max_tokens' must be at least 1",
                Some("max_tokens"),
            ));
        }
        match self.logprobs {
            Some(k) if k > MAX_TOP_LOGPROBS => Err(ApiError::invalid(
                format!("'logprobs' must be between 0 and {MAX_TOP_LOGPROBS}, got {k}"),
                Some("logprobs"),
            )),
            k => Ok(k.map(|k| k as usize)),
        }
    }
}

impl ChatRequest {
    /// The limit on generated tokens (`max_completion_tokens`, else `max_tokens`).
    pub fn max_tokens(&self) -> Result<Option<u32>, ApiError> {
        let (v, name) = match self.max_completion_tokens {
            Some(v) => (Some(v), "max_completion_tokens"),
            None => (self.max_tokens, "max_tokens"),
        };
        if v == Some(0) {
            return Err(ApiError::invalid(
                format!("'{name}' must be at least 1"),
                Some(name),
            ));
        }
        Ok(v)
    }

    /// The number of alternatives to report per position, when logprobs are asked for.
    pub fn check_logprobs(&self) -> Result<Option<usize>, ApiError> {
        let on = self.logprobs.unwrap_or(false);
        match self.top_logprobs {
            Some(k) if k > MAX_TOP_LOGPROBS => Err(ApiError::invalid(
                format!("'top_logprobs' must be between 0 and {MAX_TOP_LOGPROBS}, got {k}"),
                Some("top_logprobs"),
            )),
            Some(_) if !on => Err(ApiError::invalid(
                "'top_logprobs' needs 'logprobs' set to true",
                Some("top_logprobs"),
            )),
            k => Ok(on.then(|| k.unwrap_or(0) as usize)),
        }
    }

    /// The messages as template input: `{"role", "content"}` objects with text content.
    pub fn template_messages(&self) -> Result<Vec<Value>, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid(
                "'messages' must not be empty",
                Some("messages"),
            ));
        }
        let mut out = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.iter().enumerate() {
            let role = match m.role.as_str() {
                "developer" => "system",
                r @ ("system" | "user" | "assistant" | "tool") => r,
                other => {
                    return Err(ApiError::invalid(
                        format!("'messages[{i}].role' must be system, developer, user, assistant or tool, got '{other}'"),
                        Some(&format!("messages[{i}].role")),
                    ))
                }
            };
            let content = match &m.content {
                None => String::new(),
                Some(MessageContent::Text(s)) => s.clone(),
                Some(MessageContent::Parts(parts)) => {
                    let mut s = String::new();
                    for (j, p) in parts.iter().enumerate() {
                        match (p.kind.as_str(), &p.text) {
                            ("text", Some(t)) => s.push_str(t),
                            _ => {
                                return Err(ApiError::invalid(
                                    format!(
                                    "'messages[{i}].content[{j}]': only text parts are supported"
                                ),
                                    Some(&format!("messages[{i}].content[{j}]")),
                                ))
                            }
                        }
                    }
                    s
                }
            };
            let mut msg = serde_json::json!({"role": role, "content": content});
            if let Some(name) = &m.name {
                msg["name"] = Value::String(name.clone());
            }
            out.push(msg);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_types_name_the_field() {
        let e = parse_request::<CompletionRequest>(br#"{"prompt": "hi", "temperature": "hot"}"#)
            .unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e = parse::<CompletionRequest>(br#"{"prompt": "hi", "#).unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let e = parse::<ChatRequest>(br#"{"messages": [{"role": 3}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
    }

    #[test]
    fn prompts_of_every_shape_parse() {
        let p = |s: &str| parse::<CompletionRequest>(s.as_bytes()).unwrap().prompt;
        assert!(matches!(p(r#"{"prompt": "a"}"#), Prompt::Text(_)));
        assert!(matches!(p(r#"{"prompt": ["a", "b"]}"#), Prompt::Texts(v) if v.len() == 2));
        assert!(matches!(p(r#"{"prompt": [1, 2]}"#), Prompt::Ids(v) if v == [1, 2]));
        assert!(matches!(p(r#"{"prompt": [[1], [2, 3]]}"#), Prompt::IdLists(v) if v.len() == 2));
    }

    #[test]
    fn ranges_are_checked() {
        let c = |s: &str| {
            parse_request::<CompletionRequest>(s.as_bytes())
                .unwrap()
                .common
                .check(8)
        };
        assert_eq!(
            c(r#"{"prompt": "", "n": 9}"#).unwrap_err().param.as_deref(),
            Some("n")
        );
        assert_eq!(
            c(r#"{"prompt": "", "temperature": 2.5}"#)
                .unwrap_err()
                .param
                .as_deref(),
            Some("temperature")
        );
        assert_eq!(
            c(r#"{"prompt": "", "stop": ["a","b","c","d","e"]}"#)
                .unwrap_err()
                .param
                .as_deref(),
            Some("stop")
        );
        let ok = c(r#"{"prompt": "", "stop": "x", "n": 3, "seed": 5}"#).unwrap();
        assert_eq!(
            (ok.n, ok.stop.clone(), ok.seed),
            (3, vec!["x".to_string()], Some(5))
        );
    }
}
