#!/usr/bin/env python3
"""Check a GGUF file written by `herd quantize` with the `gguf` package (llama.cpp's reader).

    check_gguf.py OUT.gguf [--herd-f32 DEQ.gguf] [--source SRC.gguf] [--file-type N]

* OUT opens with gguf.GGUFReader; it has general.architecture "llama", the llama.*
  hyperparameters llama.cpp needs, general.file_type (== N when given),
  general.quantization_version 2, and a tokenizer (tokenizer.ggml.model with as many tokens,
  and token types, as token_embd has rows).
* Every tensor dequantizes with gguf.quants.dequantize to its GGUF shape; norms are F32.
* --herd-f32: DEQ is `herd quantize OUT DEQ --type f32`, herd's own decoding of OUT; every
  tensor of OUT decoded by gguf must equal it exactly (both follow ggml's dequantizers).
* --source: SRC holds the values before quantization (F32/F16/BF16 or any type, decoded by
  gguf); each tensor's relative RMS error must stay under its type's bound.

Exits non-zero with one line per failure.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import GGUFReader
from gguf.quants import dequantize

# Relative RMS error bounds against the source, per stored type: about twice the error of
# normally distributed data on each type's grid (Q4_0 ≈ 0.11, Q2_K ≈ 0.30, ...).
RMS_BOUND = {
    QT.F32: 0.0,
    QT.F16: 1e-3,
    QT.BF16: 8e-3,
    QT.Q8_0: 0.01,
    QT.Q6_K: 0.04,
    QT.Q5_K: 0.08,
    QT.Q4_K: 0.16,
    QT.Q4_0: 0.22,
    QT.Q3_K: 0.32,
    QT.Q2_K: 0.6,
}

NEEDED = [
    "context_length",
    "embedding_length",
    "block_count",
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "rope.dimension_count",
    "rope.freq_base",
    "attention.layer_norm_rms_epsilon",
]


def value(r: GGUFReader, key: str):
    f = r.get_field(key)
    if f is None:
        return None
    return f.contents()


def decoded(r: GGUFReader) -> dict[str, np.ndarray]:
    return {t.name: dequantize(t.data, t.tensor_type).astype(np.float32) for t in r.tensors}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--herd-f32")
    ap.add_argument("--source")
    ap.add_argument("--file-type", type=int)
    a = ap.parse_args()
    errors: list[str] = []
    r = GGUFReader(a.out)
    if value(r, "general.architecture") != "llama":
        errors.append(f"general.architecture is {value(r, 'general.architecture')!r}")
    for k in NEEDED:
        if value(r, f"llama.{k}") is None:
            errors.append(f"llama.{k} missing")
    if value(r, "general.quantization_version") != 2:
        errors.append("general.quantization_version is not 2")
    ft = value(r, "general.file_type")
    if ft is None or (a.file_type is not None and ft != a.file_type):
        errors.append(f"general.file_type is {ft}, expected {a.file_type}")
    tokens = value(r, "tokenizer.ggml.tokens")
    model = value(r, "tokenizer.ggml.model")
    if model not in ("llama", "gpt2") or not tokens:
        errors.append(f"no tokenizer (model {model!r})")
    types = value(r, "tokenizer.ggml.token_type")
    if tokens and (types is None or len(types) != len(tokens)):
        errors.append("token_type does not have one entry per token")
    out = decoded(r)
    kinds = {t.name: t.tensor_type for t in r.tensors}
    emb = out.get("token_embd.weight")
    if emb is None:
        errors.append("token_embd.weight missing")
    elif tokens and len(tokens) > emb.shape[0]:
        errors.append(f"{len(tokens)} tokens but token_embd has {emb.shape[0]} rows")
    n_layers = value(r, "llama.block_count") or 0
    for i in range(n_layers):
        for n in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm",
                  "ffn_gate", "ffn_down", "ffn_up"):
            if f"blk.{i}.{n}.weight" not in out:
                errors.append(f"blk.{i}.{n}.weight missing")
    for name, x in out.items():
        if "norm" in name and kinds[name] != QT.F32:
            errors.append(f"{name} is {kinds[name].name}, norms stay F32")
        if not np.all(np.isfinite(x)):
            errors.append(f"{name}: non-finite values")
    if a.herd_f32:
        herd = decoded(GGUFReader(a.herd_f32))
        for name, x in out.items():
            y = herd.get(name)
            if y is None or y.shape != x.shape:
                errors.append(f"{name}: herd's decoding has shape {None if y is None else y.shape}, gguf's {x.shape}")
            elif not np.array_equal(x, y):
                d = float(np.max(np.abs(x - y)))
                errors.append(f"{name} ({kinds[name].name}): gguf and herd decodings differ by up to {d}")
    if a.source:
        src = decoded(GGUFReader(a.source))
        for name, x in out.items():
            s = src.get(name)
            if s is None or s.shape != x.shape:
                errors.append(f"{name}: source shape {None if s is None else s.shape}, output {x.shape}")
                continue
            den = float(np.sqrt(np.mean(s.astype(np.float64) ** 2))) or 1.0
            rel = float(np.sqrt(np.mean((x.astype(np.float64) - s) ** 2))) / den
            bound = RMS_BOUND.get(kinds[name])
            if bound is None or rel > bound:
                errors.append(f"{name} ({kinds[name].name}): relative RMS error {rel:.4g} > {bound}")
    for e in errors:
        print(f"check_gguf: {a.out}: {e}", file=sys.stderr)
    if not errors:
        print(f"check_gguf: {a.out}: ok ({len(out)} tensors, file_type {ft}, tokenizer {model}, {len(tokens)} tokens)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
