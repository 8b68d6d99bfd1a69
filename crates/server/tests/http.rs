//! The HTTP API end to end: a server on a loopback port with stories260K (a trained tiny
//! Llama), driven over real connections. Greedy output is checked against llama2.c's run.c ids.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use engine::serve::SchedulerConfig;
use serde_json::{json, Value};
use server::client::{self, Endpoint};
use server::{Server, ServerConfig, ServerHandle};
use tokenizer::StreamDecoder;

const MODEL: &str = "stories260K";
/// Positions per sequence in the test servers.
const N_CTX: usize = 512;

struct TestServer {
    ep: Endpoint,
    handle: ServerHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Stops intake, waits for the server to return, and gives its result.
    fn shutdown(mut self) -> std::io::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn gguf(d: &Path) -> PathBuf {
    d.join("stories260K/stories260K.gguf")
}

/// Starts a server on 127.0.0.1:0; `None` (after a skip line) without the reference data.
fn start(
    test: &str,
    tweak: impl FnOnce(&mut ServerConfig, &mut SchedulerConfig),
) -> Option<TestServer> {
    let d = testdata::shared_data(test)?;
    let loaded = engine::load(&gguf(&d), None).unwrap();
    let mut sched = SchedulerConfig {
        max_seqs: 8,
        n_ctx: N_CTX,
        kv_blocks: 8 * N_CTX.div_ceil(16),
        // run.c computes in f32; so does the cache here, for exact greedy output.
        kv_type: engine::KvType::F32,
        max_step_tokens: 256,
        max_queue: 64,
    };
    let mut cfg = ServerConfig::new(MODEL);
    cfg.shutdown_grace = Duration::from_secs(20);
    tweak(&mut cfg, &mut sched);
    let api_key = cfg.api_key.clone();
    let server = Server::new(
        Arc::new(loaded.model),
        loaded.tokenizer.unwrap(),
        &loaded.path,
        sched,
        cfg,
    )
    .unwrap();
    let handle = server.handle();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            server
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await
        })
    });
    Some(TestServer {
        ep: Endpoint::parse(&format!("http://{addr}"), api_key).unwrap(),
        handle,
        stop: Some(tx),
        thread: Some(thread),
    })
}

fn post(s: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let r = client::post_json(&s.ep, path, &body).unwrap();
    let status = r.status;
    (status, r.json().unwrap())
}

fn completion(s: &TestServer, body: Value) -> Value {
    let (status, v) = post(s, "/v1/completions", body);
    assert_eq!(status, 200, "{v}");
    v
}

/// The `data:` payloads of a stream, `[DONE]` excluded (asserted last), as JSON.
fn stream(s: &TestServer, path: &str, body: Value) -> Vec<Value> {
    let r = client::post_json(&s.ep, path, &body).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let events: Vec<String> = r.events().map(Result::unwrap).collect();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

fn text_of(v: &Value, i: usize) -> String {
    v["choices"][i]["text"].as_str().unwrap().to_string()
}

/// Runs a request that must still work (after an error case).
fn still_serves(s: &TestServer) {
    let v = completion(
        s,
        json!({"model": MODEL, "prompt": "Once", "max_tokens": 3}),
    );
    assert_eq!(v["usage"]["completion_tokens"], 3);
}

fn json_file(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn greedy_completions_match_llama2c() {
    let Some(s) = start("greedy_completions_match_llama2c", |_, _| {}) else {
        return;
    };
    let d = testdata::shared_data("greedy_completions_match_llama2c").unwrap();
    let tok = engine::load(&gguf(&d), None).unwrap().tokenizer.unwrap();
    let cases = json_file(&d.join("expected/stories260K_greedy_llama2c_runc.json"));
    let mut n_checked = 0;
    for case in cases["cases"].as_array().unwrap() {
        let prompt = ids(&case["prompt_ids"]);
        let want = ids(&case["ids"]);
        let generated = &want[prompt.len()..];
        if prompt.len() + generated.len() > N_CTX {
            continue;
        }
        let mut dec = StreamDecoder::continuing();
        let mut expected = String::new();
        for &id in generated {
            expected.push_str(&dec.push(tok.as_ref(), id).unwrap());
        }
        expected.push_str(&dec.finish());
        let max_tokens = generated.len();
        // Token ids as the prompt; then the same prompt as text (BOS added by the server).
        let v = completion(
            &s,
            json!({"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}),
        );
        assert_eq!(text_of(&v, 0), expected, "prompt {}", case["prompt"]);
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["prompt_tokens"], prompt.len());
        assert_eq!(v["usage"]["completion_tokens"], max_tokens);
        let text = case["prompt"].as_str().unwrap();
        if !text.is_empty() {
            let v = completion(
                &s,
                json!({"model": MODEL, "prompt": text, "max_tokens": max_tokens, "temperature": 0}),
            );
            assert_eq!(text_of(&v, 0), expected, "prompt {text:?}");
        }
        n_checked += 1;
    }
    assert!(n_checked >= 3);
}

#[test]
fn models_health_metrics_tokenize_detokenize() {
    let Some(s) = start("models_health_metrics_tokenize_detokenize", |_, _| {}) else {
        return;
    };
    let v = client::get(&s.ep, "/v1/models").unwrap().json().unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], MODEL);
    assert_eq!(v["data"][0]["object"], "model");
    let r = client::get(&s.ep, &format!("/v1/models/{MODEL}")).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(client::get(&s.ep, "/v1/models/other").unwrap().status, 404);
    let r = client::get(&s.ep, "/health").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json().unwrap()["status"], "ok");

    // The run.c case "Once upon a time" has its sentencepiece ids (BOS first).
    let d = testdata::shared_data("models_health_metrics_tokenize_detokenize").unwrap();
    let cases = json_file(&d.join("expected/stories260K_greedy_llama2c_runc.json"));
    let case = cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["prompt"] == "Once upon a time")
        .unwrap();
    let want = ids(&case["prompt_ids"]);
    let (status, v) = post(&s, "/tokenize", json!({"content": "Once upon a time"}));
    assert_eq!(status, 200);
    assert_eq!(ids(&v["tokens"]), want);
    let (_, v) = post(
        &s,
        "/tokenize",
        json!({"prompt": "Once upon a time", "add_special": false}),
    );
    assert_eq!(ids(&v["tokens"]), want[1..]);
    let (status, v) = post(&s, "/detokenize", json!({"tokens": want}));
    assert_eq!(status, 200);
    assert_eq!(v["content"], "Once upon a time");
    let (status, v) = post(&s, "/detokenize", json!({"tokens": [100000]}));
    assert_eq!(status, 400, "{v}");

    still_serves(&s);
    let r = client::get(&s.ep, "/metrics").unwrap();
    assert_eq!(r.status, 200);
    let text = r.text().unwrap();
    for line in [
        "herd_requests_total 1\n",
        "herd_generation_tokens_total 3\n",
        "herd_requests_waiting 0\n",
        "herd_requests_running 0\n",
        "herd_kv_blocks_used 0\n",
        "herd_time_to_first_token_seconds_count 1\n",
        "herd_inter_token_latency_seconds_count 2\n",
        "# TYPE herd_inter_token_latency_seconds histogram\n",
        "# TYPE herd_kv_blocks_free gauge\n",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[test]
fn streaming_gives_the_same_text_with_usage_last() {
    let Some(s) = start("streaming_gives_the_same_text_with_usage_last", |_, _| {}) else {
        return;
    };
    let body = json!({"model": MODEL, "prompt": "Lily and Tom", "max_tokens": 40, "seed": 11});
    let whole = completion(&s, body.clone());
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let chunks = stream(&s, "/v1/completions", sbody);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, text_of(&whole, 0));
    assert!(chunks.len() > 3, "the text comes in pieces");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], whole["usage"]);
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&whole["choices"][0]["finish_reason"]]);

    // Chat: the role first, then content deltas that add up to the whole reply.
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "Tell a story"}],
                      "max_completion_tokens": 30, "seed": 5});
    let (status, whole) = post(&s, "/v1/chat/completions", body.clone());
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["choices"][0]["message"]["role"], "assistant");
    let mut sbody = body;
    sbody["stream"] = json!(true);
    let chunks = stream(&s, "/v1/chat/completions", sbody);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );
}

#[test]
fn n_choices_use_consecutive_seeds() {
    let Some(s) = start("n_choices_use_consecutive_seeds", |_, _| {}) else {
        return;
    };
    let body = |prompt: Value, n: usize, seed: u64, max_tokens: usize| {
        json!({"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "n": n,
               "seed": seed, "temperature": 1.0})
    };
    let once = json!("Once upon a time");
    let v = completion(&s, body(once.clone(), 3, 40, 24));
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        let alone = completion(&s, body(once.clone(), 1, 40 + i as u64, 24));
        assert_eq!(c["text"], alone["choices"][0]["text"], "choice {i}");
    }
    assert_ne!(choices[0]["text"], choices[1]["text"]);
    // Streamed: every chunk names its choice; the pieces add up per index.
    let mut sb = body(once.clone(), 3, 40, 24);
    sb["stream"] = json!(true);
    let mut texts = vec![String::new(); 3];
    for c in stream(&s, "/v1/completions", sb) {
        for ch in c["choices"].as_array().unwrap() {
            texts[ch["index"].as_u64().unwrap() as usize].push_str(ch["text"].as_str().unwrap());
        }
    }
    for (i, t) in texts.iter().enumerate() {
        assert_eq!(t, &text_of(&v, i));
    }
    // Two prompts × n = 2: choices indexed prompt-major, seeds per prompt.
    let v = completion(&s, body(json!(["Once upon a time", "Lily"]), 2, 40, 8));
    assert_eq!(v["choices"].as_array().unwrap().len(), 4);
    let second = completion(&s, body(once, 1, 41, 8));
    assert_eq!(text_of(&v, 1), text_of(&second, 0));
    let other = completion(&s, body(json!("Lily"), 1, 40, 8));
    assert_eq!(text_of(&v, 2), text_of(&other, 0));
}

#[test]
fn stop_strings_end_the_text_before_them() {
    let Some(s) = start("stop_strings_end_the_text_before_them", |_, _| {}) else {
        return;
    };
    let base =
        json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 60, "temperature": 0});
    let full = text_of(&completion(&s, base.clone()), 0);
    // A stop string from the middle of the greedy text: the text ends just before its first
    // occurrence.
    let mid = (full.len() / 2..)
        .find(|&i| full.is_char_boundary(i))
        .unwrap();
    let stop: String = full[mid..].chars().take(4).collect();
    let cut = full.find(&stop).unwrap();
    let mut body = base.clone();
    body["stop"] = json!([stop, "zzzz-not-there"]);
    let v = completion(&s, body.clone());
    assert_eq!(text_of(&v, 0), full[..cut]);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    body["stream"] = json!(true);
    let chunks = stream(&s, "/v1/completions", body);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, full[..cut]);
    // A single string works too.
    let mut body = base;
    body["stop"] = json!(stop);
    assert_eq!(text_of(&completion(&s, body), 0), full[..cut]);
    // Stopped requests gave their blocks back.
    wait_idle(&s);
}

#[test]
fn logprobs_in_both_formats() {
    let Some(s) = start("logprobs_in_both_formats", |_, _| {}) else {
        return;
    };
    let v = completion(
        &s,
        json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 12, "temperature": 0,
               "logprobs": 3}),
    );
    let lp = &v["choices"][0]["logprobs"];
    let tokens = lp["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 12);
    let text = text_of(&v, 0);
    let offsets = ids(&lp["text_offset"]);
    for (i, t) in tokens.iter().enumerate() {
        let top = lp["top_logprobs"][i].as_object().unwrap();
        assert!(top.len() <= 3 && !top.is_empty());
        // Greedy: the chosen token is the most likely one.
        let best = top
            .values()
            .map(|x| x.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        let chosen = lp["token_logprobs"][i].as_f64().unwrap();
        assert_eq!(best, chosen);
        assert!(chosen <= 0.0);
        let t = t.as_str().unwrap();
        let at = offsets[i] as usize;
        assert_eq!(&text[at..at + t.len()], t);
    }
    let (status, v) = post(
        &s,
        "/v1/chat/completions",
        json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6,
               "logprobs": true, "top_logprobs": 2, "temperature": 0}),
    );
    assert_eq!(status, 200, "{v}");
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 6);
    for e in content {
        let top = e["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 2);
        assert_eq!(top[0]["logprob"], e["logprob"]);
        let bytes: Vec<u8> = e["bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            e["token"].as_str().unwrap()
        );
    }
}

/// Waits (bounded) until no sequence runs and every block is back in the pool.
fn wait_idle(s: &TestServer) {
    for _ in 0..800 {
        let st = s.handle.stats().unwrap();
        if st.running == 0 && st.queued == 0 && st.kv_blocks_used == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("blocks not returned: {:?}", s.handle.stats());
}

#[test]
fn a_dropped_stream_gives_its_blocks_back() {
    let Some(s) = start("a_dropped_stream_gives_its_blocks_back", |_, q| {
        // Long enough generations that the stream is still running when it is dropped.
        q.n_ctx = 2048;
        q.kv_blocks = 8 * 2048 / 16;
    }) else {
        return;
    };
    let (n, max_tokens) = (8, 2000);
    let r = client::post_json(
        &s.ep,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": max_tokens,
                "stream": true, "n": n, "seed": 3}),
    )
    .unwrap();
    let mut events = r.events();
    for _ in 0..3 {
        events.next().unwrap().unwrap();
    }
    let st = s.handle.stats().unwrap();
    assert!(st.kv_blocks_used > 0, "{st:?}");
    drop(events);
    wait_idle(&s);
    let text = client::get(&s.ep, "/metrics").unwrap().text().unwrap();
    assert!(text.contains("herd_kv_blocks_used 0\n"), "{text}");
    // The cancelled choices ended long before their tokens were all generated.
    assert!(s.handle.stats().unwrap().tokens_out < (n * max_tokens) as u64);
    still_serves(&s);
}

fn error_of(status: u16, v: &Value, want_status: u16, code: Option<&str>, param: Option<&str>) {
    assert_eq!(status, want_status, "{v}");
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert_eq!(e["code"].as_str(), code, "{v}");
    assert_eq!(e["param"].as_str(), param, "{v}");
}

#[test]
fn errors_are_openai_error_objects_and_the_server_goes_on() {
    let Some(s) = start(
        "errors_are_openai_error_objects_and_the_server_goes_on",
        |c, _| {
            c.max_body_bytes = 4096;
        },
    ) else {
        return;
    };
    let r = client::request(
        &s.ep,
        "POST",
        "/v1/completions",
        Some(b"{\"prompt\": "),
        &[],
    )
    .unwrap();
    let st = r.status;
    error_of(st, &r.json().unwrap(), 400, None, None);
    still_serves(&s);
    let cases = [
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "x", "max_tokens": "ten"}),
            400,
            None,
            Some("max_tokens"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": "hi"}),
            400,
            None,
            Some("messages"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt-4", "prompt": "x"}),
            404,
            Some("model_not_found"),
            Some("model"),
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "x", "max_tokens": N_CTX}),
            400,
            Some("context_length_exceeded"),
            Some("max_tokens"),
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": vec![5u32; N_CTX + 10], "max_tokens": 1}),
            400,
            Some("context_length_exceeded"),
            Some("max_tokens"),
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "x", "n": 1000}),
            400,
            None,
            Some("n"),
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "x", "temperature": 9}),
            400,
            None,
            Some("temperature"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                   "top_logprobs": 3}),
            400,
            None,
            Some("top_logprobs"),
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "a".repeat(8000)}),
            413,
            None,
            None,
        ),
    ];
    for (path, body, status, code, param) in cases {
        let (st, v) = post(&s, path, body);
        error_of(st, &v, status, code, param);
        still_serves(&s);
    }
    let r = client::get(&s.ep, "/v1/unknown").unwrap();
    let st = r.status;
    error_of(st, &r.json().unwrap(), 404, Some("unknown_url"), None);
    still_serves(&s);
    wait_idle(&s);
}

#[test]
fn api_key_is_required_when_set() {
    let Some(s) = start("api_key_is_required_when_set", |c, _| {
        c.api_key = Some("sesame".into());
    }) else {
        return;
    };
    still_serves(&s);
    let none = Endpoint::parse(&format!("http://{}", s.ep.host), None).unwrap();
    let wrong = Endpoint::parse(&format!("http://{}", s.ep.host), Some("open".into())).unwrap();
    for ep in [&none, &wrong] {
        let r = client::post_json(ep, "/v1/completions", &json!({"prompt": "x"})).unwrap();
        let st = r.status;
        error_of(st, &r.json().unwrap(), 401, Some("invalid_api_key"), None);
        assert_eq!(client::get(ep, "/v1/models").unwrap().status, 401);
        still_serves(&s);
    }
    // Health and metrics stay open for probes.
    assert_eq!(client::get(&none, "/health").unwrap().status, 200);
    assert_eq!(client::get(&none, "/metrics").unwrap().status, 200);
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let Some(s) = start("a_full_queue_answers_429_with_retry_after", |_, q| {
        q.max_seqs = 1;
        q.max_queue = 1;
        q.n_ctx = 2048;
    }) else {
        return;
    };
    let long = json!({"model": MODEL, "prompt": "Once", "max_tokens": 2000, "stream": true});
    // One request runs, one waits, the next finds the queue full. The first could in principle
    // end before the third arrives (the model is tiny); then the round is tried again.
    let mut refused = false;
    for _ in 0..5 {
        let running = client::post_json(&s.ep, "/v1/completions", &long).unwrap();
        let mut running = running.events();
        running.next().unwrap().unwrap();
        let queued = client::post_json(&s.ep, "/v1/completions", &long).unwrap();
        assert_eq!(queued.status, 200);
        let r = client::post_json(
            &s.ep,
            "/v1/completions",
            &json!({"model": MODEL, "prompt": "x"}),
        )
        .unwrap();
        drop(running);
        drop(queued);
        if r.status == 200 {
            continue;
        }
        assert_eq!(r.header("retry-after"), Some("1"));
        let st = r.status;
        error_of(
            st,
            &r.json().unwrap(),
            429,
            Some("rate_limit_exceeded"),
            None,
        );
        refused = true;
        break;
    }
    assert!(refused, "the queue never filled");
    wait_idle(&s);
    still_serves(&s);
}

#[test]
fn a_seeded_request_is_the_same_alone_and_among_16_others() {
    let Some(s) = start(
        "a_seeded_request_is_the_same_alone_and_among_16_others",
        |_, q| {
            q.max_seqs = 17;
            q.kv_blocks = 17 * 16;
        },
    ) else {
        return;
    };
    let probe = json!({"model": MODEL, "prompt": "Lily and Tom went to the park", "max_tokens": 64,
                       "seed": 1234, "temperature": 0.9});
    let alone = text_of(&completion(&s, probe.clone()), 0);
    // Again: now its prompt blocks come from the prefix cache.
    let cached = completion(&s, probe.clone());
    assert_eq!(text_of(&cached, 0), alone);
    let busy = std::thread::scope(|sc| {
        let others: Vec<_> = (0..16)
            .map(|i| {
                let s = &s;
                sc.spawn(move || {
                    let prompt = ["Once upon a time", "There was a big", "Lily", "The sun"][i % 4];
                    completion(
                        s,
                        json!({"model": MODEL, "prompt": prompt, "max_tokens": 64 + i,
                               "seed": i, "temperature": 1.0}),
                    )
                })
            })
            .collect();
        let v = completion(&s, probe.clone());
        for o in others {
            o.join().unwrap();
        }
        v
    });
    assert_eq!(text_of(&busy, 0), alone);
}

#[test]
fn shutdown_lets_running_streams_finish() {
    let Some(s) = start("shutdown_lets_running_streams_finish", |_, _| {}) else {
        return;
    };
    let r = client::post_json(
        &s.ep,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "Once", "max_tokens": 80, "stream": true,
                "temperature": 0, "stream_options": {"include_usage": true}}),
    )
    .unwrap();
    let mut events = r.events();
    events.next().unwrap().unwrap();
    let ep = s.ep.clone();
    let waiter = std::thread::spawn(move || s.shutdown());
    let rest: Vec<String> = events.map(Result::unwrap).collect();
    assert_eq!(rest.last().map(String::as_str), Some("[DONE]"));
    let usage: Value = serde_json::from_str(&rest[rest.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 80);
    waiter.join().unwrap().unwrap();
    // Nothing listens any more.
    assert!(client::get(&ep, "/health").is_err());
}
