//! The continuous-batching scheduler on stories260K (a trained tiny Llama): outputs against
//! `Session`, determinism across batch composition, chunking and prefix-cache hits, the
//! prefix cache's accounting, cancellation, admission errors and shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::serve::{
    Event, FinishReason, GenRequest, SamplingParams, Scheduler, SchedulerConfig, SchedulerStats,
    SubmitError, Usage,
};
use engine::{KvType, Sampler, SamplerConfig, Session};
use model::Llama;

/// Positions per KV block (`engine::DEFAULT_BLOCK_SIZE`).
const BS: usize = engine::DEFAULT_BLOCK_SIZE;
/// How long a test waits for the scheduler to reach a state before it fails (a liveness
/// bound, not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(120);

fn stories260k(test: &str) -> Option<Arc<Llama>> {
    let d = testdata::shared_data(test)?;
    let (m, _, _) = engine::load_model(&d.join("stories260K/stories260K.bin")).unwrap();
    Some(Arc::new(m))
}

fn config() -> SchedulerConfig {
    SchedulerConfig {
        max_seqs: 32,
        n_ctx: 512,
        kv_blocks: 512,
        kv_type: KvType::F16,
        max_step_tokens: 64,
        max_queue: 64,
    }
}

/// A prompt of `n` ids of the 512-token vocabulary, starting with BOS, varied by `salt`.
fn prompt(n: usize, salt: u32) -> Vec<u32> {
    let mut p = vec![1u32];
    p.extend((1..n as u32).map(|i| 3 + (i * 37 + salt * 101 + i * i * salt) % 500));
    p
}

fn greedy(prompt: Vec<u32>, max_tokens: usize) -> GenRequest {
    GenRequest {
        prompt,
        max_tokens,
        sampling: SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        },
        stop_ids: vec![],
        top_logprobs: None,
    }
}

fn seeded(prompt: Vec<u32>, max_tokens: usize, seed: u64) -> GenRequest {
    GenRequest {
        prompt,
        max_tokens,
        sampling: SamplingParams {
            temperature: 0.9,
            top_p: 0.95,
            seed,
            presence_penalty: 0.3,
            frequency_penalty: 0.2,
            ..SamplingParams::default()
        },
        stop_ids: vec![],
        top_logprobs: None,
    }
}

/// A sink that forwards every event into a channel.
fn channel_sink() -> (Box<dyn FnMut(Event) -> bool + Send>, Receiver<Event>) {
    let (tx, rx) = channel();
    (Box::new(move |e| tx.send(e).is_ok()), rx)
}

#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    tokens: Vec<u32>,
    finish: FinishReason,
    usage: Usage,
}

/// Reads a request's events up to its `Done`.
fn outcome(rx: &Receiver<Event>) -> Outcome {
    let mut tokens = Vec::new();
    loop {
        match rx.recv_timeout(PATIENCE).expect("the request ends") {
            Event::Token { id, .. } => tokens.push(id),
            Event::Done { finish, usage } => {
                return Outcome {
                    tokens,
                    finish,
                    usage,
                }
            }
            Event::Error(e) => panic!("request failed: {e}"),
        }
    }
}

/// Submits all `reqs` at once and waits for every outcome.
fn run_all(s: &Scheduler, reqs: Vec<GenRequest>) -> Vec<Outcome> {
    let rxs: Vec<Receiver<Event>> = reqs
        .into_iter()
        .map(|r| {
            let (sink, rx) = channel_sink();
            s.submit(r, sink).unwrap();
            rx
        })
        .collect();
    rxs.iter().map(outcome).collect()
}

fn wait_for(s: &Scheduler, what: &str, cond: impl Fn(&SchedulerStats) -> bool) -> SchedulerStats {
    let t0 = Instant::now();
    loop {
        let st = s.stats();
        if cond(&st) {
            return st;
        }
        assert!(t0.elapsed() < PATIENCE, "never reached: {what}; {st:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `Session`'s greedy continuation of `prompt`.
fn session_greedy(model: &Llama, prompt: &[u32], max_tokens: usize) -> Vec<u32> {
    let mut session = Session::new(model);
    let mut sampler = Sampler::new(SamplerConfig {
        temperature: 0.0,
        ..SamplerConfig::default()
    });
    let mut out = Vec::new();
    session
        .generate(prompt, max_tokens, &mut sampler, &[], |id| {
            out.push(id);
            true
        })
        .unwrap();
    out
}

#[test]
fn greedy_alone_matches_session() {
    let Some(model) = stories260k("greedy_alone_matches_session") else {
        return;
    };
    let s = Scheduler::spawn(Arc::clone(&model), config()).unwrap();
    for (n, salt) in [(1, 0), (9, 1), (40, 2)] {
        let p = prompt(n, salt);
        let want = session_greedy(&model, &p, 30);
        let got = run_all(&s, vec![greedy(p, 30)]).remove(0);
        assert_eq!(got.tokens, want, "prompt of {n}");
        assert_eq!(got.finish, FinishReason::Length);
        assert_eq!(got.usage.prompt_tokens, n);
        assert_eq!(got.usage.completion_tokens, 30);
    }
    s.shutdown(Duration::from_secs(10));
}

/// Sixteen other requests of varied lengths and settings.
fn others() -> Vec<GenRequest> {
    (0..16)
        .map(|i| {
            let p = prompt(3 + 11 * i, 50 + i as u32);
            if i % 3 == 0 {
                greedy(p, 10 + 3 * i)
            } else {
                seeded(p, 10 + 3 * i, 1000 + i as u64)
            }
        })
        .collect()
}

/// The same seeded request alone, among sixteen others (its prompt read in chunks while they
/// decode) and after a prefix-cache hit gives the same tokens; greedy ones match `Session`.
#[test]
fn same_tokens_alone_batched_and_cached() {
    let Some(model) = stories260k("same_tokens_alone_batched_and_cached") else {
        return;
    };
    let target = || seeded(prompt(70, 7), 40, 42);

    let alone = Scheduler::spawn(Arc::clone(&model), config()).unwrap();
    let solo = run_all(&alone, vec![target()]).remove(0);
    alone.shutdown(Duration::ZERO);
    assert_eq!(solo.tokens.len(), 40);
    assert_eq!(solo.usage.cached_tokens, 0);

    // A small step budget: prompts are read in chunks, across steps, beside decodes.
    let s = Scheduler::spawn(
        Arc::clone(&model),
        SchedulerConfig {
            max_step_tokens: 24,
            ..config()
        },
    )
    .unwrap();
    let mut reqs = others();
    reqs.insert(8, target());
    let outs = run_all(&s, reqs.clone());
    assert_eq!(
        outs[8].tokens, solo.tokens,
        "the request's tokens changed inside a batch of 16 others"
    );
    for (r, o) in reqs.iter().zip(&outs) {
        if r.sampling.temperature == 0.0 {
            assert_eq!(o.tokens, session_greedy(&model, &r.prompt, r.max_tokens));
        }
    }

    let again = run_all(&s, vec![target()]).remove(0);
    assert_eq!(
        again.usage.cached_tokens,
        4 * BS,
        "four full blocks of the prompt"
    );
    assert_eq!(
        again.tokens, solo.tokens,
        "the request's tokens changed after a prefix-cache hit"
    );
    s.shutdown(Duration::ZERO);
}

#[test]
fn prefix_cache_hits_are_counted() {
    let Some(model) = stories260k("prefix_cache_hits_are_counted") else {
        return;
    };
    let s = Scheduler::spawn(Arc::clone(&model), config()).unwrap();
    let p50 = prompt(50, 3);
    let first = run_all(&s, vec![greedy(p50.clone(), 5)]).remove(0);
    assert_eq!(first.usage.cached_tokens, 0);
    let st = wait_for(&s, "request gone", |st| st.running == 0);
    assert_eq!(st.kv_blocks_used, 0);
    assert_eq!(
        st.kv_blocks_cached, 3,
        "three full prompt blocks stay cached"
    );
    assert_eq!(st.kv_blocks_free, config().kv_blocks);

    // Same prompt: all three full blocks are reused.
    let second = run_all(&s, vec![greedy(p50.clone(), 5)]).remove(0);
    assert_eq!(second.usage.cached_tokens, 48);
    assert_eq!(second.tokens, first.tokens);
    // A prompt of exactly three blocks: the last one is recomputed for its logits.
    let third = run_all(&s, vec![greedy(p50[..48].to_vec(), 5)]).remove(0);
    assert_eq!(third.usage.cached_tokens, 32);
    // Sharing the first 20 tokens only: one block.
    let mut fork = p50[..20].to_vec();
    fork.extend(prompt(30, 9));
    let fourth = run_all(&s, vec![greedy(fork.clone(), 5)]).remove(0);
    assert_eq!(fourth.usage.cached_tokens, 16);
    assert_eq!(fourth.tokens, session_greedy(&model, &fork, 5));
    // Generated tokens are never cached: a prompt extending an earlier prompt with its own
    // output hits only the earlier prompt's full blocks.
    let mut cont = p50.clone();
    cont.extend(&first.tokens);
    cont.extend(prompt(20, 4));
    let fifth = run_all(&s, vec![greedy(cont, 5)]).remove(0);
    assert_eq!(fifth.usage.cached_tokens, 48);

    let st = wait_for(&s, "requests gone", |st| st.running == 0);
    assert_eq!(st.prefix_cache_hits, 48 + 32 + 16 + 48);
    assert_eq!(
        st.tokens_in as usize,
        50 * 2 + 48 + fork.len() + 50 + 5 + 20
    );
    assert_eq!(st.tokens_out, 25);
    s.shutdown(Duration::ZERO);
}

#[test]
fn cancellation_frees_blocks() {
    let Some(model) = stories260k("cancellation_frees_blocks") else {
        return;
    };
    let s = Scheduler::spawn(Arc::clone(&model), config()).unwrap();
    // A sink that stops listening after three tokens.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let sink = Box::new(move |e: Event| {
        let mut l = log.lock().unwrap();
        l.push(e);
        l.len() < 3
    });
    s.submit(greedy(prompt(40, 1), 400), sink).unwrap();
    let st = wait_for(&s, "the deaf request dropped", |st| {
        st.running == 0 && st.queued == 0 && st.steps > 0
    });
    assert_eq!(st.kv_blocks_used, 0, "{st:?}");
    assert_eq!(st.kv_blocks_free, config().kv_blocks);
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "no event after the sink said stop"
    );

    // Cancel through the handle: the sink hears Done(Cancelled) and the blocks come back.
    let (open, gate) = channel();
    let (tx, rx) = channel();
    let id = s
        .submit(greedy(prompt(60, 2), 400), gated_sink(gate, tx))
        .unwrap();
    // The scheduler waits inside the sink at the first token.
    assert!(matches!(rx.recv().unwrap(), Event::Token { .. }));
    assert_eq!(
        s.stats().kv_blocks_used,
        4,
        "60 prompt positions and the next one"
    );
    s.cancel(id);
    open.send(()).unwrap();
    let out = outcome(&rx);
    assert_eq!(out.finish, FinishReason::Cancelled);
    assert!(out.usage.completion_tokens < 400);
    let st = wait_for(&s, "blocks back", |st| st.running == 0);
    assert_eq!(st.kv_blocks_used, 0);
    s.shutdown(Duration::ZERO);
}

/// A sink that blocks the scheduler thread at its first token until `gate` is released (tests
/// use it to freeze the scheduler while they submit).
fn gated_sink(gate: Receiver<()>, events: Sender<Event>) -> Box<dyn FnMut(Event) -> bool + Send> {
    let mut first = true;
    Box::new(move |e| {
        let token = matches!(e, Event::Token { .. });
        let ok = events.send(e).is_ok();
        if first && token {
            first = false;
            let _ = gate.recv();
        }
        ok
    })
}

#[test]
fn queue_full_and_too_long() {
    let Some(model) = stories260k("queue_full_and_too_long") else {
        return;
    };
    let s = Scheduler::spawn(
        Arc::clone(&model),
        SchedulerConfig {
            max_seqs: 1,
            max_queue: 2,
            n_ctx: 128,
            ..config()
        },
    )
    .unwrap();
    let (open, gate) = channel();
    let (tx, first_rx) = channel();
    s.submit(greedy(prompt(5, 1), 20), gated_sink(gate, tx))
        .unwrap();
    // Wait until the scheduler thread sits in the first request's sink.
    assert!(matches!(first_rx.recv().unwrap(), Event::Token { .. }));
    let (a, ra) = channel_sink();
    let (b, rb) = channel_sink();
    let (c, _rc) = channel_sink();
    s.submit(greedy(prompt(5, 2), 3), a).unwrap();
    s.submit(greedy(prompt(5, 3), 3), b).unwrap();
    assert_eq!(
        s.submit(greedy(prompt(5, 4), 3), c),
        Err(SubmitError::QueueFull)
    );
    assert_eq!(s.stats().queued, 2);

    let (d, _rd) = channel_sink();
    assert_eq!(
        s.submit(greedy(prompt(100, 5), 29), d),
        Err(SubmitError::TooLong {
            n_prompt: 100,
            max_tokens: 29,
            n_ctx: 128
        })
    );
    for (req, what) in [
        (greedy(vec![], 3), "empty prompt"),
        (greedy(vec![1, 512], 3), "token outside the vocabulary"),
        (greedy(vec![1], 0), "no tokens asked for"),
        (
            GenRequest {
                top_logprobs: Some(21),
                ..greedy(vec![1], 3)
            },
            "too many top logprobs",
        ),
        (
            GenRequest {
                sampling: SamplingParams {
                    presence_penalty: 2.5,
                    ..SamplingParams::default()
                },
                ..greedy(vec![1], 3)
            },
            "presence penalty out of range",
        ),
    ] {
        let (e, _re) = channel_sink();
        assert!(
            matches!(s.submit(req, e), Err(SubmitError::Invalid(_))),
            "{what}"
        );
    }
    open.send(()).unwrap();
    assert_eq!(outcome(&first_rx).finish, FinishReason::Length);
    assert_eq!(outcome(&ra).tokens.len(), 3);
    assert_eq!(outcome(&rb).tokens.len(), 3);
    s.shutdown(Duration::ZERO);
}

/// A long prompt is read in chunks over many steps while a running request keeps decoding.
#[test]
fn chunked_prefill_beside_decodes() {
    let Some(model) = stories260k("chunked_prefill_beside_decodes") else {
        return;
    };
    let step = 8;
    let s = Scheduler::spawn(
        Arc::clone(&model),
        SchedulerConfig {
            max_step_tokens: step,
            ..config()
        },
    )
    .unwrap();
    // Every event of both requests, in the order the scheduler emitted them.
    let order = Arc::new(Mutex::new(Vec::<(char, bool)>::new()));
    let (open, gate) = channel();
    let (tx, rx_a) = channel();
    let log = Arc::clone(&order);
    let mut gated = gated_sink(gate, tx);
    s.submit(
        greedy(prompt(4, 1), 150),
        Box::new(move |e| {
            log.lock()
                .unwrap()
                .push(('a', matches!(e, Event::Token { .. })));
            gated(e)
        }),
    )
    .unwrap();
    assert!(matches!(rx_a.recv().unwrap(), Event::Token { .. }));
    // The scheduler is held inside A's sink: B is surely queued before A's next step.
    let long = prompt(200, 2);
    let (tx_b, rx_b) = channel();
    let log = Arc::clone(&order);
    let steps_before = s.stats().steps;
    s.submit(
        greedy(long.clone(), 10),
        Box::new(move |e| {
            log.lock()
                .unwrap()
                .push(('b', matches!(e, Event::Token { .. })));
            tx_b.send(e).is_ok()
        }),
    )
    .unwrap();
    open.send(()).unwrap();
    let b = outcome(&rx_b);
    let a = outcome(&rx_a);
    assert_eq!(a.tokens.len(), 149, "after the first, read above");
    assert_eq!(b.tokens.len(), 10);
    let order = order.lock().unwrap();
    let a_before_b: usize = order
        .iter()
        .skip(1)
        .take_while(|&&(who, _)| who == 'a')
        .count();
    // B's 200 prompt tokens take ceil(200 / (step - 1)) steps beside A's decodes; A emits a
    // token at each of them but the one that also yields B's first token.
    let prefill_steps = 200usize.div_ceil(step - 1);
    assert!(
        a_before_b >= prefill_steps - 1,
        "A emitted {a_before_b} tokens while B's prompt was read"
    );
    let st = s.stats();
    assert!(st.steps - steps_before >= (prefill_steps + 9) as u64);
    s.shutdown(Duration::ZERO);
}

/// A pool smaller than the work: sequences are preempted and resume; everything completes
/// with the tokens it gets alone.
#[test]
fn preemption_when_the_pool_is_short() {
    let Some(model) = stories260k("preemption_when_the_pool_is_short") else {
        return;
    };
    let cfg = SchedulerConfig {
        n_ctx: 128,
        kv_blocks: 8,
        max_step_tokens: 32,
        ..config()
    };
    let reqs: Vec<GenRequest> = (0..6)
        .map(|i| seeded(prompt(20 + 7 * i, 20 + i as u32), 60, i as u64))
        .collect();
    let solo: Vec<Outcome> = {
        let s = Scheduler::spawn(Arc::clone(&model), cfg.clone()).unwrap();
        let o = reqs
            .iter()
            .map(|r| run_all(&s, vec![r.clone()]).remove(0))
            .collect();
        s.shutdown(Duration::ZERO);
        o
    };
    let s = Scheduler::spawn(Arc::clone(&model), cfg).unwrap();
    let outs = run_all(&s, reqs);
    let st = wait_for(&s, "all done", |st| st.running == 0 && st.queued == 0);
    assert!(st.preemptions > 0, "{st:?}");
    assert_eq!(st.kv_blocks_used, 0);
    for (i, (o, want)) in outs.iter().zip(&solo).enumerate() {
        assert_eq!(o.finish, FinishReason::Length, "request {i}");
        assert_eq!(o.tokens, want.tokens, "request {i} changed by preemption");
    }
    s.shutdown(Duration::ZERO);
}

/// Largest difference of a log-probability between two matmul paths that sum in another order:
/// the logits differ by rounding alone (within 1e-4, as `stories260k.rs` bounds them against
/// llama2.c), and a log-softmax value moves by at most twice its logits' largest difference.
const SUM_ORDER_LOGPROB_TOL: f32 = 2e-4;

#[test]
fn logprobs_are_consistent() {
    let Some(model) = stories260k("logprobs_are_consistent") else {
        return;
    };
    let s = Scheduler::spawn(Arc::clone(&model), config()).unwrap();
    let p = prompt(12, 5);
    let (sink, rx) = channel_sink();
    s.submit(
        GenRequest {
            top_logprobs: Some(5),
            ..greedy(p.clone(), 8)
        },
        sink,
    )
    .unwrap();
    // The first token's logprobs against the log-softmax of the prompt's last logits, taken
    // by the scheduler's matmul path (the tiles) in one forward call: a row's logits do not
    // depend on the batch or its chunks on that path (`forward_rows_are_batch_invariant`), so
    // the values must be the same bits.
    let want = {
        let spec = engine::KvSpec::new(&model.config, KvType::F16).unwrap();
        let mut kv = engine::KvCache::new(spec, p.len());
        kv.reserve(0, p.len()).unwrap();
        let positions: Vec<usize> = (0..p.len()).collect();
        let b = model::Batch {
            tokens: &p,
            positions: &positions,
            seq_ids: &vec![0; p.len()],
            logits_for: &[p.len() - 1],
        };
        let logits = model
            .forward_path(&b, &mut kv, Some(model::MatmulPath::Tiles))
            .unwrap();
        engine::log_softmax(&logits)
    };
    // And within rounding of Session's (the automatic path: at AVX2, rows for this prompt).
    let session = engine::log_softmax(&Session::new(&model).feed(&p).unwrap());
    let diff = want
        .iter()
        .zip(&session)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        diff <= SUM_ORDER_LOGPROB_TOL,
        "tile and automatic paths differ by {diff}"
    );
    let mut n = 0;
    loop {
        match rx.recv().unwrap() {
            Event::Token { id, logprob } => {
                let lp = logprob.expect("logprobs asked for");
                assert_eq!(lp.top.len(), 5);
                assert_eq!(lp.top[0].0, id, "greedy picks the most likely");
                assert_eq!(lp.top[0].1, lp.logprob);
                assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
                assert!(lp.top.iter().map(|t| t.1.exp()).sum::<f32>() <= 1.0 + 1e-5);
                if n == 0 {
                    for &(t, v) in &lp.top {
                        assert_eq!(v, want[t as usize], "token {t}");
                    }
                }
                n += 1;
            }
            Event::Done { finish, .. } => {
                assert_eq!(finish, FinishReason::Length);
                break;
            }
            Event::Error(e) => panic!("{e}"),
        }
    }
    assert_eq!(n, 8);
    s.shutdown(Duration::ZERO);
}

#[test]
fn stop_ids_end_with_stop() {
    let Some(model) = stories260k("stop_ids_end_with_stop") else {
        return;
    };
    let s = Scheduler::spawn(Arc::clone(&model), config()).unwrap();
    let p = prompt(10, 6);
    let free = session_greedy(&model, &p, 20);
    let stop = free[5];
    let cut = free.iter().position(|&t| t == stop).unwrap();
    let out = run_all(
        &s,
        vec![GenRequest {
            stop_ids: vec![stop],
            ..greedy(p, 20)
        }],
    )
    .remove(0);
    assert_eq!(out.finish, FinishReason::Stop);
    assert_eq!(out.tokens, free[..cut]);
    assert_eq!(out.usage.completion_tokens, cut);
    s.shutdown(Duration::ZERO);
}

#[test]
fn shutdown_finishes_or_cancels_and_joins() {
    let Some(model) = stories260k("shutdown_finishes_or_cancels_and_joins") else {
        return;
    };
    // With time enough, everything accepted finishes.
    let s = Scheduler::spawn(Arc::clone(&model), config()).unwrap();
    let rxs: Vec<_> = (0..4)
        .map(|i| {
            let (sink, rx) = channel_sink();
            s.submit(greedy(prompt(10, i), 20), sink).unwrap();
            rx
        })
        .collect();
    s.shutdown(Duration::from_secs(600));
    for rx in &rxs {
        assert_eq!(outcome(rx).finish, FinishReason::Length);
    }

    // With no grace, whatever has not finished is cancelled; every sink hears the end.
    let s = Scheduler::spawn(Arc::clone(&model), config()).unwrap();
    let (open, gate) = channel();
    let (tx, first) = channel();
    s.submit(greedy(prompt(10, 9), 400), gated_sink(gate, tx))
        .unwrap();
    assert!(matches!(first.recv().unwrap(), Event::Token { .. }));
    let (sink, queued) = channel_sink();
    s.submit(greedy(prompt(10, 8), 400), sink).unwrap();
    let released = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&released);
    let opener = std::thread::spawn(move || {
        // Let the scheduler go once shutdown has been asked for.
        while !r.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        open.send(()).unwrap();
    });
    released.store(true, Ordering::SeqCst);
    s.shutdown(Duration::ZERO);
    opener.join().unwrap();
    assert_eq!(outcome(&first).finish, FinishReason::Cancelled);
    assert_eq!(outcome(&queued).finish, FinishReason::Cancelled);
}

/// What the scheduler's determinism stands on: the logits of a row, computed alone and beside
/// other sequences' rows in one forward call with a fixed matmul path, are bitwise the same.
#[test]
fn forward_rows_are_batch_invariant() {
    use kernels::WeightType as W;
    // Q4_0 twice: as stored, and repacked for this CPU's decode kernels (where they have a
    // layout of their own).
    let models = [
        (W::F32, false),
        (W::F16, false),
        (W::Q8_0, false),
        (W::Q4_0, false),
    ];
    for ((ty, repack), path) in models
        .into_iter()
        .chain([(W::Q4_0, true)])
        .flat_map(|m| [(m, model::MatmulPath::Rows), (m, model::MatmulPath::Tiles)])
    {
        let model = model::synthetic("stories15m", ty, 7).unwrap();
        if repack {
            model.repack_for_kernels();
        } else {
            model.keep_stored_layouts();
        }
        let spec = engine::KvSpec::new(&model.config, KvType::F16).unwrap();
        let vocab = model.config.vocab_size;
        let last_row = |seqs: &[Vec<u32>]| -> Vec<f32> {
            let mut kv = engine::KvCache::new(spec, 64);
            let (mut t, mut p, mut s, mut lf) = (vec![], vec![], vec![], vec![]);
            for (i, q) in seqs.iter().enumerate() {
                kv.reserve(i, q.len()).unwrap();
                for (j, &x) in q.iter().enumerate() {
                    t.push(x);
                    p.push(j);
                    s.push(i);
                }
                lf.push(t.len() - 1);
            }
            let b = model::Batch {
                tokens: &t,
                positions: &p,
                seq_ids: &s,
                logits_for: &lf,
            };
            model.forward_path(&b, &mut kv, Some(path)).unwrap()[(seqs.len() - 1) * vocab..]
                .to_vec()
        };
        let ids = |n: u32, salt: u32| -> Vec<u32> {
            (0..n)
                .map(|i| (i * 7919 + salt * 104_729 + i * i * 31) % vocab as u32)
                .collect()
        };
        let alone = last_row(&[ids(50, 1)]);
        for n_other in [1, 10, 23] {
            let batched = last_row(&[ids(n_other, 3), ids(50, 1)]);
            assert!(
                batched == alone,
                "{ty:?} (repacked: {repack}) by {path:?}: a row's logits changed beside \
                 {n_other} other rows"
            );
        }
    }
}

/// Determinism on quantized weights: a synthetic Q8_0 model (random weights: near-flat
/// distributions, where the least rounding difference changes a draw), a request alone and
/// inside a batch of others that read their prompts in chunks.
#[test]
fn same_tokens_alone_and_batched_q8_0() {
    let model = Arc::new(model::synthetic("stories15m", kernels::WeightType::Q8_0, 7).unwrap());
    let cfg = SchedulerConfig {
        n_ctx: 256,
        kv_blocks: 256,
        max_step_tokens: 24,
        ..config()
    };
    let vocab = model.config.vocab_size as u32;
    let p = |n: usize, salt: u32| -> Vec<u32> {
        (0..n as u32)
            .map(|i| (i * 7919 + salt * 104_729 + i * i * 31) % vocab)
            .collect()
    };
    let target = || seeded(p(50, 1), 20, 5);
    let alone = Scheduler::spawn(Arc::clone(&model), cfg.clone()).unwrap();
    let solo = run_all(&alone, vec![target()]).remove(0);
    alone.shutdown(Duration::ZERO);
    let s = Scheduler::spawn(Arc::clone(&model), cfg).unwrap();
    let mut reqs: Vec<GenRequest> = (0..6)
        .map(|i| seeded(p(5 + 9 * i, 10 + i as u32), 15, i as u64))
        .collect();
    reqs.insert(3, target());
    let outs = run_all(&s, reqs);
    assert_eq!(
        outs[3].tokens, solo.tokens,
        "the request's tokens changed inside a batch"
    );
    s.shutdown(Duration::ZERO);
}

#[test]
fn a_panicking_sink_is_dropped_and_serving_goes_on() {
    let Some(model) = stories260k("a_panicking_sink_is_dropped_and_serving_goes_on") else {
        return;
    };
    fn shared<T: Send + Sync>(_: &T) {}
    let s = Scheduler::spawn(Arc::clone(&model), config()).unwrap();
    shared(&s);
    let mut n = 0;
    s.submit(
        greedy(prompt(8, 1), 50),
        Box::new(move |_| {
            n += 1;
            assert!(n < 2, "a sink that fails");
            true
        }),
    )
    .unwrap();
    let p = prompt(9, 2);
    let out = run_all(&s, vec![greedy(p.clone(), 10)]).remove(0);
    assert_eq!(out.tokens, session_greedy(&model, &p, 10));
    let st = wait_for(&s, "both gone", |st| st.running == 0);
    assert_eq!(st.kv_blocks_used, 0);
    s.close(Duration::ZERO);
    let t0 = Instant::now();
    while !s.is_finished() {
        assert!(t0.elapsed() < PATIENCE, "the scheduler thread did not end");
        std::thread::sleep(Duration::from_millis(2));
    }
    let (sink, _rx) = channel_sink();
    assert_eq!(
        s.submit(greedy(prompt(3, 1), 1), sink),
        Err(SubmitError::ShuttingDown)
    );
}
