"""Drives a running `herd serve` with the official `openai` Python client.

Usage: python openai_e2e.py --base-url http://127.0.0.1:PORT/v1 --model NAME [--api-key KEY]

Checks completions, chat, streaming, n, stop strings, logprobs, usage, and error objects with
their status codes. Exits non-zero with a message on the first failure.
"""

import argparse
import json
import sys
import urllib.error
import urllib.request

import openai
from openai import OpenAI


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def raw_post(base_url, path, body, api_key):
    """POST raw bytes (the client cannot send malformed JSON); returns (status, json)."""
    req = urllib.request.Request(
        base_url.rstrip("/") + path,
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--api-key", default="none")
    a = ap.parse_args()
    client = OpenAI(base_url=a.base_url, api_key=a.api_key, max_retries=0)
    model = a.model

    # Models.
    ids = [m.id for m in client.models.list().data]
    check(ids == [model], f"models: {ids}")

    # Completions: greedy twice gives the same text; usage adds up.
    c1 = client.completions.create(model=model, prompt="Once upon a time", max_tokens=24, temperature=0)
    c2 = client.completions.create(model=model, prompt="Once upon a time", max_tokens=24, temperature=0)
    text = c1.choices[0].text
    check(text and text == c2.choices[0].text, f"greedy completions differ: {text!r}")
    check(c1.choices[0].finish_reason in ("length", "stop"), c1.choices[0].finish_reason)
    u = c1.usage
    check(u.total_tokens == u.prompt_tokens + u.completion_tokens, f"usage {u}")
    check(u.completion_tokens <= 24, f"usage {u}")

    # Streaming completion: the pieces add up to the same text; usage in the last chunk.
    pieces, usage = [], None
    for chunk in client.completions.create(
        model=model, prompt="Once upon a time", max_tokens=24, temperature=0,
        stream=True, stream_options={"include_usage": True},
    ):
        if chunk.choices:
            pieces.append(chunk.choices[0].text)
        if chunk.usage:
            usage = chunk.usage
    check("".join(pieces) == text, f"stream {''.join(pieces)!r} vs {text!r}")
    check(usage is not None and usage.completion_tokens == u.completion_tokens, f"stream usage {usage}")

    # Seeded sampling: n choices equal single requests with consecutive seeds.
    many = client.completions.create(model=model, prompt="Lily", max_tokens=16, n=3, seed=7, temperature=1.0)
    check(sorted(c.index for c in many.choices) == [0, 1, 2], "n indices")
    for c in many.choices:
        one = client.completions.create(model=model, prompt="Lily", max_tokens=16, seed=7 + c.index, temperature=1.0)
        check(one.choices[0].text == c.text, f"choice {c.index}: {c.text!r} vs {one.choices[0].text!r}")

    # Stop strings: the text ends right before the first occurrence.
    stop = text[len(text) // 2:][:3]
    cut = text.find(stop)
    s = client.completions.create(model=model, prompt="Once upon a time", max_tokens=24, temperature=0, stop=[stop])
    check(s.choices[0].text == text[:cut], f"stop {stop!r}: {s.choices[0].text!r}")
    check(s.choices[0].finish_reason == "stop", s.choices[0].finish_reason)

    # Completion logprobs (legacy format).
    lp = client.completions.create(model=model, prompt="Once", max_tokens=5, temperature=0, logprobs=2).choices[0].logprobs
    check(len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 5, f"logprobs {lp}")
    for chosen, top in zip(lp.token_logprobs, lp.top_logprobs):
        check(abs(max(top.values()) - chosen) < 1e-6, f"greedy token is not the most likely: {chosen} {top}")

    # Chat, plain and streamed, with logprobs.
    msgs = [{"role": "system", "content": "You tell stories."}, {"role": "user", "content": "A story, please."}]
    chat = client.chat.completions.create(model=model, messages=msgs, max_completion_tokens=20, temperature=0,
                                          logprobs=True, top_logprobs=2)
    reply = chat.choices[0].message.content
    check(chat.choices[0].message.role == "assistant", "role")
    content = chat.choices[0].logprobs.content
    check(len(content) == chat.usage.completion_tokens, f"{len(content)} logprobs for {chat.usage.completion_tokens} tokens")
    check(all(len(e.top_logprobs) == 2 and e.top_logprobs[0].logprob == e.logprob for e in content), "chat top_logprobs")
    streamed = "".join(
        ch.choices[0].delta.content or ""
        for ch in client.chat.completions.create(model=model, messages=msgs, max_tokens=20, temperature=0, stream=True)
        if ch.choices
    )
    check(streamed == reply, f"chat stream {streamed!r} vs {reply!r}")

    # Errors: status and OpenAI error objects; the server goes on after each.
    def expect(exc, status, fn):
        try:
            fn()
        except exc as e:
            check(e.status_code == status, f"{exc.__name__}: status {e.status_code}")
            body = e.body if isinstance(e.body, dict) else {}
            check("message" in body and "type" in body, f"error body {e.body}")
            return
        raise AssertionError(f"expected {exc.__name__}")

    expect(openai.NotFoundError, 404, lambda: client.completions.create(model="no-such-model", prompt="x", max_tokens=1))
    expect(openai.BadRequestError, 400, lambda: client.completions.create(model=model, prompt="x", max_tokens=10**6))
    expect(openai.BadRequestError, 400, lambda: client.completions.create(model=model, prompt="x", n=10**4))
    expect(openai.BadRequestError, 400, lambda: client.completions.create(model=model, prompt="x", temperature="hot"))
    status, body = raw_post(a.base_url, "/completions", b'{"prompt": ', a.api_key)
    check(status == 400 and "error" in body, f"malformed JSON: {status} {body}")
    if a.api_key != "none":
        bad = OpenAI(base_url=a.base_url, api_key="wrong-key", max_retries=0)
        expect(openai.AuthenticationError, 401, lambda: bad.completions.create(model=model, prompt="x", max_tokens=1))
    again = client.completions.create(model=model, prompt="Once upon a time", max_tokens=24, temperature=0)
    check(again.choices[0].text == text, "the server changed after errors")
    print("openai e2e: all checks passed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"openai e2e: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
