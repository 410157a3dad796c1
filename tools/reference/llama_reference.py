#!/usr/bin/env python3
"""Independent numpy reference forward for the minilab demo model (llama architecture).

What it does
------------
Reads a llama-architecture GGUF (the demo model SmolLM2-135M-Instruct Q4_1, see
scripts/fetch-demo-model.sh), dequantizes every tensor to float32 with the llama.cpp
python reader (`gguf.quants.dequantize`), promotes to float64 and runs a plain llama
forward the way llama.cpp does for LLM_ARCH_LLAMA:

    x = token_embd[tokens]
    per block:  h = rms_norm(x) * attn_norm
                q, k, v = h @ Wq^T, h @ Wk^T, h @ Wv^T
                q, k = rope_normal(q), rope_normal(k)   # llama.cpp "normal" mode:
                       # adjacent pairs (x[2i], x[2i+1]) rotated by pos * base^(-2i/n_rot)
                       # applied to the GGUF (already permuted) Q/K weights' outputs
                a = causal GQA softmax(q k^T / sqrt(head_dim)) v ; x += a @ Wo^T
                h = rms_norm(x) * ffn_norm ; x += (silu(h Wg^T) * (h Wu^T)) Wd^T
    logits = (rms_norm(x) * output_norm) @ W_out^T      # W_out = output.weight or tied token_embd

rms_norm eps = llama.attention.layer_norm_rms_epsilon, rope base = llama.rope.freq_base
(default 10000), n_rot = llama.rope.dimension_count (default head_dim), heads from
llama.attention.head_count / head_count_kv. No rope scaling is implemented (the script
refuses GGUFs that declare one).

Input: 64 fixed token ids: tokenizer.ggml.bos_token_id followed by
numpy.random.default_rng(1234).integers(low=100, high=vocab_size, size=63).

Output: the JSON fixture tests/fixtures/smollm2_logits.json with keys
  model_sha256, tokens[64], argmax[64] (full vocab), max_logit[64] (full vocab),
  vocab_subset[512] (ids 0..31 + 480 ids from default_rng(4321), sorted),
  logits_subset[64][512] (rounded to 6 significant digits),
  logsumexp[64] (full vocab), rope_mode, generator.
max_logit and logsumexp are rounded to 9 significant digits. All computed in float64
from the dequantized (float32) weights.

--self-check additionally
  * verifies gguf.quants.dequantize against a hand-written Q4_1 / Q8_0 decoder on the
    first tensors of those types (layout [out, in] row-major, ne0 = in = fastest dim),
  * re-runs the forward on the alternative path: Q/K weights un-permuted to the HF layout
    (inverse of llama.cpp convert_hf_to_gguf.py `permute`) with HF `rotate_half` RoPE,
    and asserts both logits agree to 1e-6 (max abs).

How to run
----------
    python3 -m venv /tmp/minilab-ref-venv
    /tmp/minilab-ref-venv/bin/pip install numpy gguf
    scripts/fetch-demo-model.sh
    /tmp/minilab-ref-venv/bin/python tools/reference/llama_reference.py \
        [--model models/SmolLM2-135M-Instruct-Q4_1.gguf] \
        [--out tests/fixtures/smollm2_logits.json] [--self-check]
(Tested with numpy 2.4.6, gguf 0.19.0; takes a few seconds on a CPU.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np

try:
    import gguf
    from gguf.quants import dequantize
except ImportError:  # pragma: no cover
    sys.exit("llama_reference.py: needs the `gguf` PyPI package (pip install numpy gguf)")

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_MODEL = os.path.join(REPO, "models", "SmolLM2-135M-Instruct-Q4_1.gguf")
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "smollm2_logits.json")

N_TOKENS = 64
TOKEN_SEED = 1234
SUBSET_SEED = 4321
SUBSET_SIZE = 512


# ----------------------------------------------------------------------------- GGUF I/O

def field(reader: "gguf.GGUFReader", key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def load_weights(reader: "gguf.GGUFReader") -> dict[str, np.ndarray]:
    """Dequantize every tensor to float32, numpy shape = reversed GGUF ne (row-major)."""
    out = {}
    for t in reader.tensors:
        w = dequantize(t.data, t.tensor_type)
        ne = [int(x) for x in t.shape]  # GGUF order: ne0 (fastest) first
        expect = tuple(reversed(ne))
        if w.shape != expect:
            raise AssertionError(f"{t.name}: dequantized shape {w.shape} != reversed ne {expect}")
        out[t.name] = np.asarray(w, dtype=np.float32)
    return out


def f16(b: np.ndarray) -> np.ndarray:
    return b.copy().view(np.float16).astype(np.float32)


def manual_dequant(raw: np.ndarray, qtype, ne: list[int]) -> np.ndarray:
    """Hand-written decoders (ggml-quants.c) for the block types in the demo model."""
    raw = np.ascontiguousarray(raw).reshape(-1)
    Q = gguf.GGMLQuantizationType
    if qtype == Q.Q4_1:  # block: f16 d, f16 m, 16 bytes of nibbles -> 32 values
        blk = raw.reshape(-1, 20)
        d, m, qs = f16(blk[:, 0:2]), f16(blk[:, 2:4]), blk[:, 4:]
        lo = (qs & 0x0F).astype(np.float32)
        hi = (qs >> 4).astype(np.float32)
        vals = np.concatenate([lo, hi], axis=1) * d + m  # x[j] = lo nibble, x[j+16] = hi nibble
    elif qtype == Q.Q8_0:  # block: f16 d, 32 int8
        blk = raw.reshape(-1, 34)
        d, qs = f16(blk[:, 0:2]), blk[:, 2:].view(np.int8).astype(np.float32)
        vals = qs * d
    else:
        raise NotImplementedError(qtype)
    return vals.reshape(tuple(reversed(ne)))


# ----------------------------------------------------------------------------- model

class Config:
    def __init__(self, reader: "gguf.GGUFReader"):
        arch = field(reader, "general.architecture")
        if arch != "llama":
            raise SystemExit(f"unsupported architecture {arch!r}")
        self.n_layer = int(field(reader, "llama.block_count"))
        self.n_embd = int(field(reader, "llama.embedding_length"))
        self.n_ff = int(field(reader, "llama.feed_forward_length"))
        self.n_head = int(field(reader, "llama.attention.head_count"))
        self.n_head_kv = int(field(reader, "llama.attention.head_count_kv", self.n_head))
        self.eps = float(field(reader, "llama.attention.layer_norm_rms_epsilon"))
        self.rope_base = float(field(reader, "llama.rope.freq_base", 10000.0))
        self.head_dim = self.n_embd // self.n_head
        self.n_rot = int(field(reader, "llama.rope.dimension_count", self.head_dim))
        self.bos = int(field(reader, "tokenizer.ggml.bos_token_id"))
        self.n_ctx = int(field(reader, "llama.context_length"))
        for k in ("llama.rope.scaling.type", "llama.rope.scale_linear", "llama.rope.scaling.factor"):
            if k in reader.fields and field(reader, k) not in ("none", 1.0):
                raise SystemExit(f"rope scaling ({k}) not implemented")
        if self.n_rot != self.head_dim:
            raise SystemExit("partial rotary (n_rot != head_dim) not implemented")


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def rope_normal(x: np.ndarray, pos: np.ndarray, base: float, n_rot: int) -> np.ndarray:
    """llama.cpp GGML_ROPE_TYPE_NORMAL. x: [T, H, D]; pairs (2i, 2i+1) rotated."""
    i = np.arange(n_rot // 2, dtype=np.float64)
    theta = pos[:, None].astype(np.float64) * base ** (-2.0 * i / n_rot)  # [T, D/2]
    c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    x0, x1 = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
    out = x.copy()
    out[..., 0:n_rot:2] = x0 * c - x1 * s
    out[..., 1:n_rot:2] = x0 * s + x1 * c
    return out


def rope_neox_hf(x: np.ndarray, pos: np.ndarray, base: float, n_rot: int) -> np.ndarray:
    """HF transformers LlamaRotaryEmbedding + rotate_half. x: [T, H, D]."""
    inv_freq = 1.0 / (base ** (np.arange(0, n_rot, 2, dtype=np.float64) / n_rot))
    freqs = pos[:, None].astype(np.float64) * inv_freq[None, :]
    emb = np.concatenate([freqs, freqs], axis=-1)
    c, s = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
    half = n_rot // 2
    rot = np.concatenate([-x[..., half:n_rot], x[..., :half]], axis=-1)
    out = x.copy()
    out[..., :n_rot] = x[..., :n_rot] * c + rot * s
    return out


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp convert_hf_to_gguf.py LlamaModel.permute (GGUF -> HF layout)."""
    out_dim = w.shape[0]
    return (w.reshape(n_head, out_dim // n_head // 2, 2, *w.shape[1:])
             .swapaxes(1, 2)
             .reshape(w.shape))


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute (HF -> GGUF layout)."""
    out_dim = w.shape[0]
    return (w.reshape(n_head, 2, out_dim // n_head // 2, *w.shape[1:])
             .swapaxes(1, 2)
             .reshape(w.shape))


def forward(cfg: Config, W: dict[str, np.ndarray], tokens: np.ndarray, hf_path: bool = False) -> np.ndarray:
    """Returns float64 logits [T, vocab]."""
    dt = np.float64
    g = lambda name: W[name].astype(dt)  # noqa: E731
    T = len(tokens)
    pos = np.arange(T)
    H, Hkv, D = cfg.n_head, cfg.n_head_kv, cfg.head_dim
    group = H // Hkv
    mask = np.triu(np.full((T, T), -np.inf), k=1)
    scale = 1.0 / math.sqrt(D)

    x = g("token_embd.weight")[tokens]  # [T, n_embd]
    for l in range(cfg.n_layer):
        p = f"blk.{l}."
        h = rms_norm(x, g(p + "attn_norm.weight"), cfg.eps)
        wq, wk = g(p + "attn_q.weight"), g(p + "attn_k.weight")
        if hf_path:
            wq, wk = unpermute(wq, H), unpermute(wk, Hkv)
        q = (h @ wq.T).reshape(T, H, D)
        k = (h @ wk.T).reshape(T, Hkv, D)
        v = (h @ g(p + "attn_v.weight").T).reshape(T, Hkv, D)
        rope = rope_neox_hf if hf_path else rope_normal
        q = rope(q, pos, cfg.rope_base, cfg.n_rot)
        k = rope(k, pos, cfg.rope_base, cfg.n_rot)
        att = np.empty((T, H, D), dtype=dt)
        for hh in range(H):
            kv = hh // group  # llama.cpp / HF repeat_kv: head h uses kv head h // (H/Hkv)
            s = q[:, hh, :] @ k[:, kv, :].T * scale + mask
            s = s - s.max(axis=-1, keepdims=True)
            pr = np.exp(s)
            pr /= pr.sum(axis=-1, keepdims=True)
            att[:, hh, :] = pr @ v[:, kv, :]
        x = x + att.reshape(T, H * D) @ g(p + "attn_output.weight").T
        h = rms_norm(x, g(p + "ffn_norm.weight"), cfg.eps)
        ff = silu(h @ g(p + "ffn_gate.weight").T) * (h @ g(p + "ffn_up.weight").T)
        x = x + ff @ g(p + "ffn_down.weight").T
    x = rms_norm(x, g("output_norm.weight"), cfg.eps)
    head = "output.weight" if "output.weight" in W else "token_embd.weight"
    return x @ g(head).T


# ----------------------------------------------------------------------------- helpers

def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sig(x: float, n: int) -> float:
    return float(f"{float(x):.{n}g}")


def logsumexp(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))[:, 0]


SANITY_TEXT = ("The United States of America is a country in North America. It is made up of "
               "fifty states. The capital of the United States is Washington, D.C. The largest "
               "city is New York City.")


def sentence_check(reader, cfg: Config, W) -> None:
    """Next-token quality on a real English sentence. There is no tokenizer here, so the
    text is split by greedy longest match over the GGUF vocab (byte-level BPE pieces, 'Ġ'
    = space): not the true BPE merge order, but real, in-vocabulary English tokens."""
    toks = field(reader, "tokenizer.ggml.tokens")
    index = {t: i for i, t in enumerate(toks)}
    s, ids, i = SANITY_TEXT.replace(" ", "\u0120"), [], 0
    while i < len(s):
        for j in range(min(len(s), i + 24), i, -1):
            if s[i:j] in index:
                ids.append(index[s[i:j]])
                i = j
                break
        else:
            raise AssertionError(f"no vocab piece for {s[i]!r}")
    ids = np.array(ids)
    lg = forward(cfg, W, ids)
    nll = logsumexp(lg[:-1]) - lg[np.arange(len(ids) - 1), ids[1:]]
    acc = float(np.mean(lg[:-1].argmax(-1) == ids[1:]))
    ppl = float(np.exp(nll.mean()))
    print(f"llama_reference: English sanity sentence ({len(ids)} tokens): next-token top-1 "
          f"{acc:.1%}, perplexity {ppl:.2f}", file=sys.stderr)
    assert acc > 0.3 and ppl < 30, "model does not predict English: forward looks broken"


def self_check(reader, cfg: Config, W, tokens, logits) -> None:
    Q = gguf.GGMLQuantizationType
    seen = set()
    for t in reader.tensors:
        if t.tensor_type in (Q.Q4_1, Q.Q8_0) and t.tensor_type not in seen:
            seen.add(t.tensor_type)
            ref = manual_dequant(t.data, t.tensor_type, [int(x) for x in t.shape])
            err = float(np.max(np.abs(ref - W[t.name])))
            print(f"self-check: manual {t.tensor_type.name} decode of {t.name} {ref.shape}: "
                  f"max|diff| = {err:.3g}", file=sys.stderr)
            assert err == 0.0, "gguf.quants.dequantize disagrees with the hand-written decoder"
    wq = W["blk.0.attn_q.weight"]
    assert np.array_equal(permute(unpermute(wq, cfg.n_head), cfg.n_head), wq)
    alt = forward(cfg, W, tokens, hf_path=True)
    err = float(np.max(np.abs(alt - logits)))
    print(f"self-check: HF layout (un-permuted Q/K + rotate_half) vs GGUF layout (normal rope): "
          f"max|logit diff| = {err:.3g}", file=sys.stderr)
    assert err < 1e-6, "RoPE paths disagree"
    # Negative control: the mismatched combination must NOT agree.
    good = logits[:8]
    W2 = dict(W)
    for l in range(cfg.n_layer):
        W2[f"blk.{l}.attn_q.weight"] = unpermute(W[f"blk.{l}.attn_q.weight"], cfg.n_head)
        W2[f"blk.{l}.attn_k.weight"] = unpermute(W[f"blk.{l}.attn_k.weight"], cfg.n_head_kv)
    wrong = forward(cfg, W2, tokens[:8], hf_path=False)
    diff = float(np.max(np.abs(wrong - good)))
    print(f"self-check: negative control (HF weights + normal rope) max|diff| = {diff:.3g} "
          f"(must be large)", file=sys.stderr)
    assert diff > 1e-2
    print("self-check: OK", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--self-check", action="store_true",
                    help="check dequantization and the HF-layout/rotate_half path (1e-6)")
    args = ap.parse_args()

    reader = gguf.GGUFReader(args.model)
    cfg = Config(reader)
    W = load_weights(reader)
    vocab = W["token_embd.weight"].shape[0]
    print(f"llama_reference: {cfg.n_layer} layers, n_embd {cfg.n_embd}, n_ff {cfg.n_ff}, "
          f"heads {cfg.n_head}/{cfg.n_head_kv}, head_dim {cfg.head_dim}, rope base {cfg.rope_base}, "
          f"eps {cfg.eps:.3g}, vocab {vocab}, bos {cfg.bos}, "
          f"lm head {'output.weight' if 'output.weight' in W else 'tied token_embd.weight'}",
          file=sys.stderr)

    rng = np.random.default_rng(TOKEN_SEED)
    tokens = np.concatenate([[cfg.bos], rng.integers(low=100, high=vocab, size=N_TOKENS - 1)]).astype(np.int64)
    srng = np.random.default_rng(SUBSET_SEED)
    others = srng.choice(np.arange(32, vocab), size=SUBSET_SIZE - 32, replace=False)
    subset = np.sort(np.concatenate([np.arange(32), others])).astype(np.int64)
    assert len(np.unique(subset)) == SUBSET_SIZE

    logits = forward(cfg, W, tokens)
    assert np.all(np.isfinite(logits))

    # Non-degeneracy checks (no tokenizer here).
    lse = logsumexp(logits)
    p = np.exp(logits - lse[:, None])
    ent = -(p * np.log(np.maximum(p, 1e-300))).sum(-1)
    am = logits.argmax(-1)
    print(f"llama_reference: softmax entropy mean {ent.mean():.3f} nats (max {ent.max():.3f}) "
          f"vs log(vocab) {math.log(vocab):.3f}; {len(set(am.tolist()))} distinct argmax over "
          f"{len(am)} positions", file=sys.stderr)
    assert ent.mean() < 0.8 * math.log(vocab), "softmax is nearly uniform: forward looks broken"
    assert len(set(am.tolist())) > 8, "argmax barely varies across positions"
    sentence_check(reader, cfg, W)

    if args.self_check:
        self_check(reader, cfg, W, tokens, logits)

    fixture = {
        "model_sha256": sha256_file(args.model),
        "tokens": tokens.tolist(),
        "argmax": am.tolist(),
        "max_logit": [sig(v, 9) for v in logits.max(-1)],
        "vocab_subset": subset.tolist(),
        "logits_subset": [[sig(v, 6) for v in row] for row in logits[:, subset]],
        "logsumexp": [sig(v, 9) for v in lse],
        "rope_mode": "normal(interleaved) on GGUF-permuted weights",
        "generator": "tools/reference/llama_reference.py",
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print(f"llama_reference: wrote {args.out} ({os.path.getsize(args.out)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
