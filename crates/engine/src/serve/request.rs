//! What a client asks for, what it gets back, and the state of a sequence in the running batch.

use crate::sampler::{apply_presence_frequency, log_softmax, top_logprobs};
use crate::{Sampler, SamplerConfig};

use super::prefix::BlockKey;
use super::{RequestId, Sink, SubmitError};

/// Most alternatives a token's logprobs may list (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// Sampling settings of one request. `temperature <= 0` is greedy.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    /// Smallest set of most likely tokens whose probability exceeds `top_p`; 1 disables.
    pub top_p: f32,
    /// The `top_k` most likely tokens; 0 disables.
    pub top_k: usize,
    /// Drops tokens less likely than `min_p` times the most likely one; 0 disables.
    pub min_p: f32,
    pub seed: u64,
    /// Subtracted once from the logit of every token generated so far (OpenAI semantics).
    pub presence_penalty: f32,
    /// Subtracted from the logit of every generated token, times its count so far.
    pub frequency_penalty: f32,
    /// Multiplicative penalty on tokens among the last 64 of prompt and output; 1 disables.
    pub repeat_penalty: f32,
}

impl Default for SamplingParams {
    /// OpenAI's defaults: temperature 1, no truncation, no penalties.
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: 0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repeat_penalty: 1.0,
        }
    }
}

impl SamplingParams {
    fn sampler_config(&self) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: 64,
            seed: self.seed,
        }
    }
}

/// One generation request, in token ids.
#[derive(Debug, Clone, PartialEq)]
pub struct GenRequest {
    pub prompt: Vec<u32>,
    /// Tokens to generate at most (at least 1).
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends with [`FinishReason::Stop`] when one of these is sampled (it is not
    /// emitted).
    pub stop_ids: Vec<u32>,
    /// `Some(k)`: each token event carries the chosen token's logprob and the `k` most likely
    /// alternatives (`k <= MAX_TOP_LOGPROBS`).
    pub top_logprobs: Option<usize>,
}

impl GenRequest {
    pub(super) fn validate(&self, vocab_size: usize) -> Result<(), SubmitError> {
        let bad = |m: String| Err(SubmitError::Invalid(m));
        if self.prompt.is_empty() {
            return bad("the prompt is empty".into());
        }
        if self.max_tokens == 0 {
            return bad("max_tokens must be at least 1".into());
        }
        if let Some(&id) = self.prompt.iter().find(|&&id| id as usize >= vocab_size) {
            return bad(format!(
                "prompt token {id} is outside the vocabulary of {vocab_size}"
            ));
        }
        if let Some(k) = self.top_logprobs.filter(|&k| k > MAX_TOP_LOGPROBS) {
            return bad(format!(
                "top_logprobs must be at most {MAX_TOP_LOGPROBS}, got {k}"
            ));
        }
        let s = &self.sampling;
        for (name, v) in [
            ("presence_penalty", s.presence_penalty),
            ("frequency_penalty", s.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return bad(format!("{name} must be in [-2, 2], got {v}"));
            }
        }
        s.sampler_config().validate().map_err(SubmitError::Invalid)
    }
}

/// Log probabilities reported with a token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    /// Of the chosen token.
    pub logprob: f32,
    /// The most likely tokens and theirs, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// Why a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop id was sampled.
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// Cancelled: by [`super::Scheduler::cancel`], a sink that stopped listening, or shutdown.
    Cancelled,
}

/// Token counts of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose KV came from the prefix cache.
    pub cached_tokens: usize,
}

/// What a sink receives, in order: tokens, then one `Done` (or one `Error`).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Token {
        id: u32,
        logprob: Option<TokenLogprobs>,
    },
    Done {
        finish: FinishReason,
        usage: Usage,
    },
    Error(String),
}

/// A request in the running batch (or preempted, waiting to resume).
pub(super) struct Sequence {
    pub id: RequestId,
    pub req: GenRequest,
    sink: Option<Sink>,
    sampler: Sampler,
    /// Prompt, then generated tokens.
    pub tokens: Vec<u32>,
    /// Positions whose keys and values are in the KV cache.
    pub n_computed: usize,
    /// Sequence id in the KV cache while running.
    pub slot: usize,
    /// Prompt tokens attached from the prefix cache at first admission.
    pub cached_tokens: usize,
    /// Full prompt blocks already offered to the prefix cache.
    pub n_offered: usize,
    /// Prefix-cache keys of the full prompt blocks.
    pub prompt_keys: Vec<BlockKey>,
    /// Admitted at least once (preempted sequences resume with it set).
    pub started: bool,
}

impl Sequence {
    pub fn new(id: RequestId, req: GenRequest, sink: Sink) -> Self {
        let sampler = Sampler::new(req.sampling.sampler_config());
        Sequence {
            id,
            tokens: req.prompt.clone(),
            req,
            sink: Some(sink),
            sampler,
            n_computed: 0,
            slot: usize::MAX,
            cached_tokens: 0,
            n_offered: 0,
            prompt_keys: Vec::new(),
            started: false,
        }
    }

    pub fn n_prompt(&self) -> usize {
        self.req.prompt.len()
    }

    pub fn generated(&self) -> &[u32] {
        &self.tokens[self.n_prompt()..]
    }

    /// Tokens still to run through the model.
    pub fn remaining(&self) -> usize {
        self.tokens.len() - self.n_computed
    }

    /// Whether the sink still listens.
    pub fn listening(&self) -> bool {
        self.sink.is_some()
    }

    /// Sends `event`; a sink that returns false (or panics) is dropped and never called again.
    pub fn emit(&mut self, event: Event) {
        if let Some(sink) = &mut self.sink {
            let call = std::panic::AssertUnwindSafe(|| sink(event));
            // A sink that panics stops listening; the scheduler and the other requests go on.
            if !std::panic::catch_unwind(call).unwrap_or(false) {
                self.sink = None;
            }
        }
    }

    pub fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.n_prompt(),
            completion_tokens: self.generated().len(),
            cached_tokens: self.cached_tokens,
        }
    }

    /// Ends the request: one `Done` event, then the sink is dropped.
    pub fn finish(&mut self, finish: FinishReason) {
        let usage = self.usage();
        self.emit(Event::Done { finish, usage });
        self.sink = None;
    }

    /// Ends the request with an error.
    pub fn fail(&mut self, msg: String) {
        self.emit(Event::Error(msg));
        self.sink = None;
    }

    /// Samples the next token from `logits` (the row after the last token) and emits it.
    /// Returns the finish reason when the request is complete.
    ///
    /// Logprobs are the log-softmax of the logits after the penalties (repetition, presence,
    /// frequency) and before temperature and top-k / top-p / min-p truncation: with no
    /// penalties, the model's own distribution, as vLLM reports by default.
    pub fn sample(&mut self, logits: &[f32]) -> Option<FinishReason> {
        let mut l = logits.to_vec();
        let s = &self.req.sampling;
        apply_presence_frequency(
            &mut l,
            &self.tokens[self.req.prompt.len()..],
            s.presence_penalty,
            s.frequency_penalty,
        );
        self.sampler.penalize(&mut l, &self.tokens);
        let lp = self.req.top_logprobs.map(|k| {
            let all = log_softmax(&l);
            (top_logprobs(&all, k), all)
        });
        let id = self.sampler.sample_penalized(&mut l);
        if self.req.stop_ids.contains(&id) {
            return Some(FinishReason::Stop);
        }
        self.tokens.push(id);
        let logprob = lp.map(|(top, all)| TokenLogprobs {
            logprob: all[id as usize],
            top,
        });
        self.emit(Event::Token { id, logprob });
        if self.generated().len() >= self.req.max_tokens {
            return Some(FinishReason::Length);
        }
        None
    }
}
