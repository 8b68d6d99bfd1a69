//! One generation request: its prompts × `n` choices submitted to the scheduler, events
//! turned into text (UTF-8-safe decoding, stop strings) and logprobs, per choice.

use std::sync::Arc;
use std::time::Instant;

use engine::serve::{
    Event, FinishReason, GenRequest, RequestId, SamplingParams, SubmitError, TokenLogprobs,
};
use serde_json::{json, Map, Value};
use tokenizer::{StreamDecoder, Tokenize};
use tokio::sync::mpsc;

use crate::api::GenParams;
use crate::error::ApiError;
use crate::metrics::add;
use crate::stop::StopBuffer;
use crate::AppState;

/// A generated token with what the client may be shown about it.
#[derive(Debug, Clone)]
pub struct TokenItem {
    pub id: u32,
    pub logprob: Option<TokenLogprobs>,
    /// The text this token added (possibly empty: part of a character).
    pub text_len: usize,
}

/// What a choice produced since the last call.
#[derive(Debug, Clone)]
pub struct Delta {
    pub index: usize,
    pub text: String,
    pub items: Vec<TokenItem>,
    /// `stop`, `length` or `abort` once the choice has ended.
    pub finish: Option<&'static str>,
}

struct Choice {
    request: Option<RequestId>,
    decoder: StreamDecoder,
    stop: StopBuffer<TokenItem>,
    finish: Option<&'static str>,
    n_tokens: usize,
    cached_tokens: usize,
}

/// The request in flight; dropping it cancels every choice still running (a client that went
/// away frees its KV blocks at the scheduler's next step).
pub struct Running {
    st: Arc<AppState>,
    rx: mpsc::UnboundedReceiver<(usize, Event)>,
    choices: Vec<Choice>,
    /// Prompt length of each prompt; choice `i` belongs to prompt `i / n`.
    pub prompt_lens: Vec<usize>,
    pub n: usize,
    open: usize,
}

/// How to generate, besides the sampling settings.
pub struct Job {
    pub prompts: Vec<Vec<u32>>,
    pub params: GenParams,
    /// `None`: up to the end of the context.
    pub max_tokens: Option<usize>,
    pub stop_ids: Vec<u32>,
    pub top_logprobs: Option<usize>,
    /// Decoding continues the prompt's text (completions: spaces kept) or starts a reply.
    pub continues_prompt: bool,
    /// When the request arrived (time to first token counts from here).
    pub arrived: Instant,
}

fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::QueueFull => ApiError::queue_full(),
        SubmitError::TooLong {
            n_prompt,
            max_tokens,
            n_ctx,
        } => context_error(n_prompt, max_tokens, n_ctx),
        SubmitError::Invalid(msg) => ApiError::invalid(msg, None),
        SubmitError::ShuttingDown => ApiError::unavailable(),
    }
}

fn context_error(n_prompt: usize, max_tokens: usize, n_ctx: usize) -> ApiError {
    ApiError::invalid(
        format!(
            "This model's maximum context length is {n_ctx} tokens. However, you requested {} tokens ({n_prompt} in the prompt, {max_tokens} in the completion). Please reduce the prompt or the completion length.",
            n_prompt + max_tokens
        ),
        Some("max_tokens"),
    )
    .with_code("context_length_exceeded")
}

/// Checks the prompts against the vocabulary and the context, then submits every choice.
pub fn start(st: &Arc<AppState>, job: Job) -> Result<Running, ApiError> {
    let vocab = st.tok.vocab_size();
    for (i, p) in job.prompts.iter().enumerate() {
        if p.is_empty() {
            return Err(ApiError::invalid(
                format!("prompt {i} is empty"),
                Some("prompt"),
            ));
        }
        if let Some(&bad) = p.iter().find(|&&id| id as usize >= vocab) {
            return Err(ApiError::invalid(
                format!("prompt {i}: token id {bad} is outside the vocabulary of {vocab}"),
                Some("prompt"),
            ));
        }
        let room = st.n_ctx.saturating_sub(p.len());
        let max_tokens = job.max_tokens.unwrap_or(room);
        if p.len() + max_tokens > st.n_ctx || max_tokens == 0 {
            return Err(context_error(p.len(), max_tokens.max(1), st.n_ctx));
        }
    }
    let n = job.params.n;
    let base_seed = job.params.seed.unwrap_or_else(|| st.fresh_seed());
    let (tx, rx) = mpsc::unbounded_channel();
    let mut running = Running {
        st: st.clone(),
        rx,
        choices: Vec::new(),
        prompt_lens: job.prompts.iter().map(Vec::len).collect(),
        n,
        open: 0,
    };
    let total: usize = job.prompts.iter().map(Vec::len).sum();
    add(&st.metrics.prompt_tokens, total as u64);
    for prompt in &job.prompts {
        let max_tokens = job
            .max_tokens
            .unwrap_or(st.n_ctx.saturating_sub(prompt.len()));
        for j in 0..n {
            let index = running.choices.len();
            let p = &job.params;
            let req = GenRequest {
                prompt: prompt.clone(),
                max_tokens,
                sampling: SamplingParams {
                    temperature: p.temperature,
                    top_p: p.top_p,
                    top_k: p.top_k,
                    min_p: p.min_p,
                    seed: base_seed.wrapping_add(j as u64),
                    presence_penalty: p.presence_penalty,
                    frequency_penalty: p.frequency_penalty,
                    repeat_penalty: p.repeat_penalty,
                },
                stop_ids: job.stop_ids.clone(),
                top_logprobs: job.top_logprobs,
            };
            let tx = tx.clone();
            let metrics = st.metrics.clone();
            let arrived = job.arrived;
            let mut last: Option<Instant> = None;
            let sink = Box::new(move |ev: Event| {
                if let Event::Token { .. } = &ev {
                    let now = Instant::now();
                    match last {
                        None => metrics.ttft.observe((now - arrived).as_secs_f64()),
                        Some(t) => metrics.itl.observe((now - t).as_secs_f64()),
                    }
                    last = Some(now);
                }
                tx.send((index, ev)).is_ok()
            });
            running.choices.push(Choice {
                request: None,
                decoder: if job.continues_prompt {
                    StreamDecoder::continuing()
                } else {
                    StreamDecoder::new()
                },
                stop: StopBuffer::new(p.stop.clone()),
                finish: None,
                n_tokens: 0,
                cached_tokens: 0,
            });
            let id = st
                .with_scheduler(|s| match s {
                    Some(s) => s.submit(req, sink),
                    None => Err(SubmitError::ShuttingDown),
                })
                .map_err(submit_error)?;
            running.choices[index].request = Some(id);
            running.open += 1;
        }
    }
    Ok(running)
}

impl Running {
    /// The next piece of output, `None` once every choice has ended.
    pub async fn next(&mut self) -> Option<Result<Delta, ApiError>> {
        loop {
            if self.open == 0 {
                return None;
            }
            let Some((index, ev)) = self.rx.recv().await else {
                self.open = 0;
                return Some(Err(ApiError::internal(
                    "the scheduler stopped before the request ended",
                )));
            };
            match self.process(index, ev) {
                Ok(Some(d)) => return Some(Ok(d)),
                Ok(None) => continue,
                Err(e) => {
                    self.cancel_all();
                    return Some(Err(e));
                }
            }
        }
    }

    fn end(&mut self, index: usize, reason: &'static str) {
        let c = &mut self.choices[index];
        if c.finish.is_none() {
            c.finish = Some(reason);
            self.open -= 1;
        }
    }

    fn process(&mut self, index: usize, ev: Event) -> Result<Option<Delta>, ApiError> {
        let st = self.st.clone();
        let Some(c) = self.choices.get_mut(index) else {
            return Ok(None);
        };
        if c.finish.is_some() {
            return Ok(None);
        }
        match ev {
            Event::Token { id, logprob } => {
                c.n_tokens += 1;
                add(&st.metrics.generation_tokens, 1);
                let text = c
                    .decoder
                    .push(st.tok.as_ref(), id)
                    .map_err(|e| ApiError::internal(format!("decoding token {id}: {e}")))?;
                let item = TokenItem {
                    id,
                    logprob,
                    text_len: text.len(),
                };
                let r = c.stop.push(&text, item);
                let mut finish = None;
                if r.stopped {
                    if let Some(req) = c.request {
                        st.with_scheduler(|s| {
                            if let Some(s) = s {
                                s.cancel(req)
                            }
                        });
                    }
                    self.end(index, "stop");
                    finish = Some("stop");
                }
                Ok(Some(Delta {
                    index,
                    text: r.text,
                    items: r.items,
                    finish,
                }))
            }
            Event::Done { finish, usage } => {
                c.cached_tokens = usage.cached_tokens;
                let tail = c.decoder.finish();
                let mut r = c.stop.push_text(&tail);
                let reason = if r.stopped {
                    "stop"
                } else {
                    let rest = c.stop.finish();
                    r.text.push_str(&rest.text);
                    r.items.extend(rest.items);
                    match finish {
                        FinishReason::Stop => "stop",
                        FinishReason::Length => "length",
                        FinishReason::Cancelled => "abort",
                    }
                };
                self.end(index, reason);
                Ok(Some(Delta {
                    index,
                    text: r.text,
                    items: r.items,
                    finish: Some(reason),
                }))
            }
            Event::Error(msg) => {
                self.end(index, "error");
                Err(ApiError::internal(msg))
            }
        }
    }

    fn cancel_all(&mut self) {
        for c in &mut self.choices {
            if let Some(req) = c.request {
                if c.finish.is_none() {
                    self.st.with_scheduler(|s| {
                        if let Some(s) = s {
                            s.cancel(req)
                        }
                    });
                }
            }
            c.finish.get_or_insert("abort");
        }
        self.open = 0;
    }

    /// `usage` over every choice: each prompt counts once.
    pub fn usage(&self) -> Value {
        let prompt: usize = self.prompt_lens.iter().sum();
        let completion: usize = self.choices.iter().map(|c| c.n_tokens).sum();
        let cached: usize = self
            .choices
            .iter()
            .step_by(self.n.max(1))
            .map(|c| c.cached_tokens)
            .sum();
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        })
    }

    pub fn n_choices(&self) -> usize {
        self.choices.len()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.open > 0 {
            self.cancel_all();
        }
    }
}

/// A token as text for logprobs: its bytes, lossily.
pub fn token_string(tok: &dyn Tokenize, id: u32) -> String {
    String::from_utf8_lossy(&tok.token_bytes(id).unwrap_or_default()).into_owned()
}

/// Legacy completions logprobs: `tokens`, `token_logprobs`, `top_logprobs`, `text_offset`;
/// `offset` is where the first item's text starts in the choice's text, advanced past them.
pub fn completion_logprobs(tok: &dyn Tokenize, items: &[TokenItem], offset: &mut usize) -> Value {
    let mut tokens = Vec::new();
    let mut lps = Vec::new();
    let mut tops = Vec::new();
    let mut offsets = Vec::new();
    for it in items {
        tokens.push(Value::String(token_string(tok, it.id)));
        let lp = it.logprob.as_ref();
        lps.push(json!(lp.map(|l| l.logprob)));
        let mut top = Map::new();
        if let Some(l) = lp {
            for &(id, p) in &l.top {
                top.insert(token_string(tok, id), json!(p));
            }
        }
        tops.push(Value::Object(top));
        offsets.push(json!(*offset));
        *offset += it.text_len;
    }
    json!({
        "tokens": tokens,
        "token_logprobs": lps,
        "top_logprobs": tops,
        "text_offset": offsets,
    })
}

/// Chat logprobs entries: `{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}`.
pub fn chat_logprobs(tok: &dyn Tokenize, items: &[TokenItem]) -> Vec<Value> {
    let entry = |id: u32, lp: f32| {
        let bytes = tok.token_bytes(id).unwrap_or_default();
        json!({
            "token": String::from_utf8_lossy(&bytes),
            "logprob": lp,
            "bytes": bytes,
        })
    };
    items
        .iter()
        .map(|it| {
            let (lp, top) = match &it.logprob {
                Some(l) => (
                    l.logprob,
                    l.top.iter().map(|&(id, p)| entry(id, p)).collect(),
                ),
                None => (0.0, Vec::new()),
            };
            let mut e = entry(it.id, lp);
            e["top_logprobs"] = Value::Array(top);
            e
        })
        .collect()
}
