//! A compiled chat template and its rendering.

use minijinja::value::Value;
use minijinja::Environment;

use crate::context::{normalize_messages, RenderContext, STRFTIME_NOW_FIXED};
use crate::convert::to_value;
use crate::environment::{environment, Raised, FIXED_NOW_VAR};
use crate::error::ChatError;
use crate::preprocess::prepare;

/// A chat template compiled once and rendered any number of times.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    origin: String,
    source: String,
    env: Environment<'static>,
}

impl ChatTemplate {
    /// Compiles `source`. `origin` says where it came from (a file path, or
    /// `tokenizer_config.json chat_template`); every error names it.
    pub fn new(source: &str, origin: &str) -> Result<Self, ChatError> {
        let syntax = |e: minijinja::Error| ChatError::Syntax {
            origin: origin.to_string(),
            line: e.line().unwrap_or(0),
            detail: describe(&e),
        };
        let mut env = environment().map_err(syntax)?;
        env.add_template_owned(origin.to_string(), prepare(source))
            .map_err(syntax)?;
        Ok(ChatTemplate {
            origin: origin.to_string(),
            source: source.to_string(),
            env,
        })
    }

    /// Where the template came from, as given to [`ChatTemplate::new`].
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The template source as given (before any rewriting).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the conversation in `ctx` to the prompt text, as transformers'
    /// `apply_chat_template(..., tokenize=False)` does.
    ///
    /// Messages are first cleaned up as [`crate::normalize_messages`] describes.
    pub fn render(&self, ctx: &RenderContext) -> Result<String, ChatError> {
        let template = self
            .env
            .get_template(&self.origin)
            .map_err(|e| self.render_error(e))?;
        template
            .render(self.variables(ctx))
            .map_err(|e| self.render_error(e))
    }

    /// The template variables of `ctx`; `extra` entries override the fixed ones.
    fn variables(&self, ctx: &RenderContext) -> Value {
        let messages = serde_json::Value::Array(normalize_messages(&ctx.messages));
        let mut vars: Vec<(String, Value)> = vec![
            ("messages".into(), to_value(&messages)),
            (
                "tools".into(),
                ctx.tools.as_ref().map_or(Value::from(()), to_value),
            ),
            ("documents".into(), Value::from(())),
            (
                "add_generation_prompt".into(),
                Value::from(ctx.add_generation_prompt),
            ),
            ("bos_token".into(), Value::from(ctx.bos_token.as_str())),
            ("eos_token".into(), Value::from(ctx.eos_token.as_str())),
        ];
        for (name, value) in &ctx.extra {
            let name = if name == STRFTIME_NOW_FIXED {
                FIXED_NOW_VAR
            } else {
                name.as_str()
            };
            vars.push((name.to_string(), to_value(value)));
        }
        Value::from_pairs(vars)
    }

    fn render_error(&self, e: minijinja::Error) -> ChatError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = cause {
            if let Some(Raised(msg)) = err.downcast_ref::<Raised>() {
                return ChatError::Raised {
                    origin: self.origin.clone(),
                    msg: msg.clone(),
                };
            }
            cause = err.source();
        }
        ChatError::Render {
            origin: self.origin.clone(),
            line: e.line().unwrap_or(0),
            detail: describe(&e),
        }
    }
}

/// minijinja's error kind and detail, without its own location suffix.
fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}
