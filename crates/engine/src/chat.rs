//! A conversation with a model: the history is rendered through the chat template every turn,
//! and the KV cache of the prefix it shares with the previous turn is kept, not recomputed.

use chat::{ChatTemplate, RenderContext};
use model::Llama;
use serde_json::{json, Value};
use tokenizer::{StreamDecoder, Tokenize};

use crate::prompt::encode_chat;
use crate::{EngineError, GenerateStats, KvType, Result, Sampler, Session};

/// What a model needs for chat besides its weights: the template, the texts its `bos_token`
/// and `eos_token` variables stand for, and the ids that end a reply.
#[derive(Debug, Clone)]
pub struct ChatSettings {
    pub template: ChatTemplate,
    pub bos_token: String,
    pub eos_token: String,
    pub stop_ids: Vec<u32>,
}

impl ChatSettings {
    /// The render context for `messages`.
    pub fn context(&self, messages: Vec<Value>, add_generation_prompt: bool) -> RenderContext {
        RenderContext {
            messages,
            add_generation_prompt,
            bos_token: self.bos_token.clone(),
            eos_token: self.eos_token.clone(),
            ..RenderContext::default()
        }
    }
}

/// One reply's figures.
#[derive(Debug, Clone)]
pub struct ReplyStats {
    pub generate: GenerateStats,
    /// Prompt tokens whose keys and values were reused from the previous turn.
    pub n_reused: usize,
}

/// A conversation in progress.
pub struct ChatRunner<'m> {
    session: Session<'m>,
    tok: &'m dyn Tokenize,
    settings: ChatSettings,
    system: Option<String>,
    messages: Vec<Value>,
}

impl<'m> ChatRunner<'m> {
    pub fn new(
        model: &'m Llama,
        tok: &'m dyn Tokenize,
        settings: ChatSettings,
        system: Option<String>,
        kv_type: KvType,
    ) -> Result<Self> {
        let mut runner = ChatRunner {
            session: Session::with_kv_type(model, kv_type)?,
            tok,
            settings,
            system,
            messages: Vec::new(),
        };
        runner.reset();
        Ok(runner)
    }

    /// Forgets the conversation (the system message stays). Cached tokens are kept: the next
    /// turn reuses whatever prefix still matches.
    pub fn reset(&mut self) {
        self.messages = match &self.system {
            Some(s) => vec![json!({"role": "system", "content": s})],
            None => Vec::new(),
        };
    }

    /// Appends a message to the history without generating (e.g. to restore a conversation).
    pub fn push_message(&mut self, role: &str, content: &str) {
        self.messages
            .push(json!({"role": role, "content": content}));
    }

    /// The messages so far.
    pub fn messages(&self) -> &[Value] {
        &self.messages
    }

    /// Adds `user` to the conversation and generates the reply, passing text to `on_text` as it
    /// is produced (returning false stops the reply, which is kept as far as it got).
    pub fn reply(
        &mut self,
        user: &str,
        max_tokens: usize,
        sampler: &mut Sampler,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<(String, ReplyStats)> {
        self.messages.push(json!({"role": "user", "content": user}));
        let ctx = self.settings.context(self.messages.clone(), true);
        let ids = match encode_chat(self.tok, &self.settings.template, &ctx) {
            Ok((_, ids)) => ids,
            Err(e) => {
                self.messages.pop();
                return Err(e);
            }
        };
        let n_ctx = self.session.n_ctx();
        if ids.len() >= n_ctx {
            self.messages.pop();
            return Err(EngineError::PromptTooLong {
                n_prompt: ids.len(),
                n_ctx,
            });
        }
        let cached = self.session.tokens();
        let mut common = cached.iter().zip(&ids).take_while(|(a, b)| a == b).count();
        if common == ids.len() {
            // Logits are needed after the last prompt token: feed it again.
            common -= 1;
        }
        self.session.rewind(common);
        let mut decoder = StreamDecoder::new();
        let mut text = String::new();
        let mut decode_err = None;
        let tok = self.tok;
        let stats = self.session.generate(
            &ids[common..],
            max_tokens.min(n_ctx - ids.len()),
            sampler,
            &self.settings.stop_ids,
            |id| match decoder.push(tok, id) {
                Ok(piece) => {
                    text.push_str(&piece);
                    on_text(&piece)
                }
                Err(e) => {
                    decode_err = Some(e);
                    false
                }
            },
        )?;
        if let Some(e) = decode_err {
            return Err(e.into());
        }
        let tail = decoder.finish();
        if !tail.is_empty() {
            text.push_str(&tail);
            on_text(&tail);
        }
        self.messages
            .push(json!({"role": "assistant", "content": text}));
        Ok((
            text,
            ReplyStats {
                generate: stats,
                n_reused: common,
            },
        ))
    }
}
