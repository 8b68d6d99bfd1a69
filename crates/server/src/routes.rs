//! Routes, authentication, and the response bodies of every endpoint.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokenizer::EncodeOptions;

use crate::api::{
    self, ChatRequest, CompletionRequest, DetokenizeRequest, Prompt, TokenizeRequest,
};
use crate::error::ApiError;
use crate::generate::{self, chat_logprobs, completion_logprobs, Delta, Job, Running};
use crate::metrics::{add, Gauges};
use crate::AppState;

type St = State<Arc<AppState>>;

pub(crate) fn router(st: Arc<AppState>) -> Router {
    let protected = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/models/{*id}", get(model))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route_layer(middleware::from_fn_with_state(st.clone(), auth));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(st.cfg.max_body_bytes))
        .with_state(st)
}

/// Compares without an early exit on the first differing byte.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(st): St, req: Request, next: Next) -> Response {
    if let Some(key) = &st.cfg.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            None => {
                return ApiError::unauthorized(
                    "You didn't provide an API key. Send it in the Authorization header as 'Bearer KEY'.",
                )
                .into_response()
            }
            Some(k) if !same_key(k.as_bytes(), key.as_bytes()) => {
                return ApiError::unauthorized("Incorrect API key provided.").into_response()
            }
            _ => {}
        }
    }
    next.run(req).await
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(
        format!("Invalid URL ({} {})", req.method(), req.uri().path()),
        None,
        "unknown_url",
    )
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!("the request body is too large: {}", e.body_text()))
        } else {
            ApiError::invalid(
                format!("cannot read the request body: {}", e.body_text()),
                None,
            )
        }
    })
}

fn check_model(st: &AppState, model: Option<&str>) -> Result<(), ApiError> {
    match model {
        Some(m) if m != st.cfg.model_name => Err(ApiError::not_found(
            format!(
                "The model `{m}` does not exist. This server serves `{}`.",
                st.cfg.model_name
            ),
            Some("model"),
            "model_not_found",
        )),
        _ => Ok(()),
    }
}

async fn health(State(st): St) -> Response {
    if st.shutting_down.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting down"})),
        )
            .into_response()
    } else {
        Json(json!({"status": "ok"})).into_response()
    }
}

async fn metrics(State(st): St) -> Response {
    let g = st.with_scheduler(|s| {
        s.map(|s| {
            let x = s.stats();
            Gauges {
                queued: x.queued,
                running: x.running,
                kv_blocks_used: x.kv_blocks_used,
                kv_blocks_free: x.kv_blocks_free,
                kv_blocks_cached: x.kv_blocks_cached,
                preemptions: x.preemptions,
                prefix_cache_hit_tokens: x.prefix_cache_hits,
                steps: x.steps,
            }
        })
        .unwrap_or_default()
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(&g),
    )
        .into_response()
}

fn model_card(st: &AppState) -> Value {
    json!({
        "id": st.cfg.model_name,
        "object": "model",
        "created": st.created,
        "owned_by": "herd",
        "max_model_len": st.n_ctx,
    })
}

async fn models(State(st): St) -> Json<Value> {
    Json(json!({"object": "list", "data": [model_card(&st)]}))
}

async fn model(State(st): St, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    check_model(&st, Some(&id))?;
    Ok(Json(model_card(&st)))
}

async fn tokenize(
    State(st): St,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let req: TokenizeRequest = api::parse(&body_bytes(body)?)?;
    check_model(&st, req.model.as_deref())?;
    let text = match (req.content, req.prompt) {
        (Some(t), None) | (None, Some(t)) => t,
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of 'content' and 'prompt'",
                Some("content"),
            ))
        }
    };
    let add_bos = req.add_special.unwrap_or(true) && st.add_bos;
    let ids = st.tok.encode_with(
        &text,
        EncodeOptions {
            add_bos,
            ..EncodeOptions::default()
        },
    );
    Ok(Json(
        json!({"tokens": ids, "count": ids.len(), "max_model_len": st.n_ctx}),
    ))
}

async fn detokenize(
    State(st): St,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let req: DetokenizeRequest = api::parse(&body_bytes(body)?)?;
    check_model(&st, req.model.as_deref())?;
    let text = st
        .tok
        .decode(&req.tokens)
        .map_err(|e| ApiError::invalid(format!("cannot decode: {e}"), Some("tokens")))?;
    Ok(Json(json!({"content": text})))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn request_id(st: &AppState, prefix: &str) -> String {
    format!("{prefix}-{:016x}", st.fresh_seed())
}

/// Which endpoint a response is for.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Completion,
    Chat,
}

struct Meta {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    logprobs: bool,
    include_usage: bool,
}

async fn completions(
    State(st): St,
    _headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let arrived = Instant::now();
    add(&st.metrics.requests, 1);
    match start_completion(&st, body, arrived) {
        Ok((running, meta, stream)) => respond(st, running, meta, stream).await,
        Err(e) => fail(&st, e),
    }
}

async fn chat_completions(State(st): St, body: Result<Bytes, BytesRejection>) -> Response {
    let arrived = Instant::now();
    add(&st.metrics.requests, 1);
    match start_chat(&st, body, arrived) {
        Ok((running, meta, stream)) => respond(st, running, meta, stream).await,
        Err(e) => fail(&st, e),
    }
}

fn fail(st: &AppState, e: ApiError) -> Response {
    add(&st.metrics.requests_failed, 1);
    e.into_response()
}

fn start_completion(
    st: &Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
    arrived: Instant,
) -> Result<(Running, Meta, bool), ApiError> {
    let req: CompletionRequest = api::parse_request(&body_bytes(body)?)?;
    check_model(st, req.model.as_deref())?;
    let params = req.common.check(st.cfg.max_n)?;
    let top_logprobs = req.check_extra()?;
    let encode = |t: &str| {
        st.tok.encode_with(
            t,
            EncodeOptions {
                add_bos: st.add_bos,
                ..EncodeOptions::default()
            },
        )
    };
    let prompts: Vec<Vec<u32>> = match &req.prompt {
        Prompt::Text(t) => vec![encode(t)],
        Prompt::Texts(v) => v.iter().map(|t| encode(t)).collect(),
        Prompt::Ids(v) => vec![v.clone()],
        Prompt::IdLists(v) => v.clone(),
    };
    if prompts.is_empty() {
        return Err(ApiError::invalid(
            "'prompt' must not be empty",
            Some("prompt"),
        ));
    }
    if prompts.len() * params.n > st.cfg.max_n {
        return Err(ApiError::invalid(
            format!(
                "prompts × n must be at most {}, got {}",
                st.cfg.max_n,
                prompts.len() * params.n
            ),
            Some("n"),
        ));
    }
    let stream = params.stream;
    let meta = Meta {
        kind: Kind::Completion,
        id: request_id(st, "cmpl"),
        created: unix_now(),
        model: st.cfg.model_name.clone(),
        logprobs: top_logprobs.is_some(),
        include_usage: params.include_usage,
    };
    let running = generate::start(
        st,
        Job {
            prompts,
            max_tokens: Some(req.max_tokens.unwrap_or(16) as usize),
            params,
            stop_ids: st.stop_ids.clone(),
            top_logprobs,
            continues_prompt: true,
            arrived,
        },
    )?;
    Ok((running, meta, stream))
}

fn start_chat(
    st: &Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
    arrived: Instant,
) -> Result<(Running, Meta, bool), ApiError> {
    let req: ChatRequest = api::parse_request(&body_bytes(body)?)?;
    check_model(st, req.model.as_deref())?;
    let params = req.common.check(st.cfg.max_n)?;
    let max_tokens = req.max_tokens()?;
    let top_logprobs = req.check_logprobs()?;
    let messages = req.template_messages()?;
    let settings = st.chat.as_ref().map_err(|e| {
        ApiError::invalid(format!("this model has no usable chat template: {e}"), None)
    })?;
    let mut ctx = settings.context(messages, true);
    ctx.tools = req.tools.clone();
    let (_, ids) = engine::encode_chat(st.tok.as_ref(), &settings.template, &ctx).map_err(|e| {
        ApiError::invalid(format!("the chat template failed: {e}"), Some("messages"))
    })?;
    let stream = params.stream;
    let meta = Meta {
        kind: Kind::Chat,
        id: request_id(st, "chatcmpl"),
        created: unix_now(),
        model: st.cfg.model_name.clone(),
        logprobs: top_logprobs.is_some(),
        include_usage: params.include_usage,
    };
    let mut stop_ids = settings.stop_ids.clone();
    stop_ids.extend(&st.stop_ids);
    stop_ids.sort_unstable();
    stop_ids.dedup();
    let running = generate::start(
        st,
        Job {
            prompts: vec![ids],
            max_tokens: max_tokens.map(|m| m as usize),
            params,
            stop_ids,
            top_logprobs,
            continues_prompt: false,
            arrived,
        },
    )?;
    Ok((running, meta, stream))
}

/// Text and logprobs gathered per choice for a whole response.
#[derive(Default, Clone)]
struct Gathered {
    text: String,
    items: Vec<generate::TokenItem>,
    finish: Option<&'static str>,
}

async fn respond(st: Arc<AppState>, running: Running, meta: Meta, stream: bool) -> Response {
    if stream {
        return stream_response(st, running, meta);
    }
    let mut running = running;
    let mut out = vec![Gathered::default(); running.n_choices()];
    while let Some(d) = running.next().await {
        match d {
            Ok(d) => {
                let g = &mut out[d.index];
                g.text.push_str(&d.text);
                g.items.extend(d.items);
                if d.finish.is_some() {
                    g.finish = d.finish;
                }
            }
            Err(e) => return fail(&st, e),
        }
    }
    add(&st.metrics.requests_ok, 1);
    let tok = st.tok.as_ref();
    let choices: Vec<Value> = out
        .iter()
        .enumerate()
        .map(|(i, g)| match meta.kind {
            Kind::Completion => json!({
                "index": i,
                "text": g.text,
                "logprobs": if meta.logprobs { completion_logprobs(tok, &g.items, &mut 0) } else { Value::Null },
                "finish_reason": g.finish,
            }),
            Kind::Chat => json!({
                "index": i,
                "message": {"role": "assistant", "content": g.text, "refusal": null},
                "logprobs": if meta.logprobs { json!({"content": chat_logprobs(tok, &g.items), "refusal": null}) } else { Value::Null },
                "finish_reason": g.finish,
            }),
        })
        .collect();
    let object = match meta.kind {
        Kind::Completion => "text_completion",
        Kind::Chat => "chat.completion",
    };
    Json(json!({
        "id": meta.id,
        "object": object,
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": null,
        "choices": choices,
        "usage": running.usage(),
    }))
    .into_response()
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

struct StreamState {
    st: Arc<AppState>,
    running: Running,
    meta: Meta,
    queue: std::collections::VecDeque<Bytes>,
    offsets: Vec<usize>,
    ended: bool,
}

impl StreamState {
    fn chunk(&self, choices: Vec<Value>, usage: Option<Value>) -> Bytes {
        let object = match self.meta.kind {
            Kind::Completion => "text_completion",
            Kind::Chat => "chat.completion.chunk",
        };
        let mut v = json!({
            "id": self.meta.id,
            "object": object,
            "created": self.meta.created,
            "model": self.meta.model,
            "system_fingerprint": null,
            "choices": choices,
        });
        if self.meta.include_usage {
            v["usage"] = usage.unwrap_or(Value::Null);
        }
        sse(&v)
    }

    fn delta(&mut self, d: Delta) {
        let tok = self.st.tok.as_ref();
        if !d.text.is_empty() || !d.items.is_empty() {
            let choice = match self.meta.kind {
                Kind::Completion => json!({
                    "index": d.index,
                    "text": d.text,
                    "logprobs": if self.meta.logprobs { completion_logprobs(tok, &d.items, &mut self.offsets[d.index]) } else { Value::Null },
                    "finish_reason": null,
                }),
                Kind::Chat => json!({
                    "index": d.index,
                    "delta": {"content": d.text},
                    "logprobs": if self.meta.logprobs { json!({"content": chat_logprobs(tok, &d.items), "refusal": null}) } else { Value::Null },
                    "finish_reason": null,
                }),
            };
            let c = self.chunk(vec![choice], None);
            self.queue.push_back(c);
        }
        if let Some(f) = d.finish {
            let choice = match self.meta.kind {
                Kind::Completion => {
                    json!({"index": d.index, "text": "", "logprobs": null, "finish_reason": f})
                }
                Kind::Chat => {
                    json!({"index": d.index, "delta": {}, "logprobs": null, "finish_reason": f})
                }
            };
            let c = self.chunk(vec![choice], None);
            self.queue.push_back(c);
        }
    }
}

fn stream_response(st: Arc<AppState>, running: Running, meta: Meta) -> Response {
    let n = running.n_choices();
    let mut s = StreamState {
        st,
        running,
        meta,
        queue: Default::default(),
        offsets: vec![0; n],
        ended: false,
    };
    if s.meta.kind == Kind::Chat {
        for i in 0..n {
            let c = s.chunk(
                vec![json!({"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null})],
                None,
            );
            s.queue.push_back(c);
        }
    }
    let body = futures_util::stream::unfold(s, |mut s| async move {
        loop {
            if let Some(b) = s.queue.pop_front() {
                return Some((Ok::<Bytes, Infallible>(b), s));
            }
            if s.ended {
                return None;
            }
            match s.running.next().await {
                Some(Ok(d)) => s.delta(d),
                Some(Err(e)) => {
                    add(&s.st.metrics.requests_failed, 1);
                    s.queue.push_back(sse(&e.body()));
                    s.queue.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
                    s.ended = true;
                }
                None => {
                    add(&s.st.metrics.requests_ok, 1);
                    if s.meta.include_usage {
                        let usage = s.running.usage();
                        let c = s.chunk(Vec::new(), Some(usage));
                        s.queue.push_back(c);
                    }
                    s.queue.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
                    s.ended = true;
                }
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}
