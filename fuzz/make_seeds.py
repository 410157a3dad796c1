#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/seeds/<target>/.

Independent of the harness: it only needs the `gguf`, `numpy` and `safetensors` PyPI packages
(see README.md) and, for the demo-derived GGUF seeds, models/SmolLM2-135M-Instruct-Q4_1.gguf
(skipped with a note when absent). Deterministic: running it twice writes the same bytes.

Seeds are kept small (each well under 1 MB) so that libFuzzer's mutations stay fast.
"""

import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader, GGUFValueType, GGUFWriter

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"
DEMO = ROOT / "models" / "SmolLM2-135M-Instruct-Q4_1.gguf"
RNG = np.random.default_rng(0x5EED)


def bytes_to_unicode():
    """GPT-2's byte → printable character table (the byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def byte_vocab():
    """256 byte tokens, a few merged tokens, then <|endoftext|> and <s>; merges for the merged ones."""
    alphabet = sorted(bytes_to_unicode().values())
    merges = ["Ġ t", "h e", "Ġt he", "l l", "o r", "1 2"]
    merged = ["Ġt", "he", "Ġthe", "ll", "or", "12"]
    tokens = alphabet + merged + ["<|endoftext|>", "<s>"]
    types = [1] * (len(alphabet) + len(merged)) + [3, 3]
    return tokens, types, merges


def randn(*shape, scale=0.1):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def add_tensor(w, name, arr, qtype):
    if qtype == Q.F32:
        w.add_tensor(name, arr.astype(np.float32))
    elif qtype == Q.F16:
        w.add_tensor(name, arr.astype(np.float16))
    else:
        data = gguf.quants.quantize(arr, qtype)
        w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qtype)


def tiny_gguf(path, *, arch="llama", hidden=8, heads=2, kv_heads=1, ffn=16, blocks=1, ctx=64, linear_q=Q.F32,
              embd_q=Q.F32, tied=True, bias=False, pre="smollm", key_length=None, extra_kv=None):
    """A tiny but complete GGUF model that `GgufSource::open`, `config()`, `from_gguf` and the
    model load all accept."""
    tokens, types, merges = byte_vocab()
    vocab = len(tokens)
    head_dim = key_length or hidden // heads
    q, kv = heads * head_dim, kv_heads * head_dim
    w = GGUFWriter(str(path), arch)
    w.add_name(f"tiny-{arch}")
    w.add_block_count(blocks)
    w.add_context_length(ctx)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    if key_length:
        w.add_key_length(key_length)
        w.add_value_length(key_length)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(vocab - 1)
    w.add_eos_token_id(vocab - 2)
    w.add_add_bos_token(True)
    for k, v in (extra_kv or {}).items():
        if isinstance(v, str):
            w.add_string(k, v)
        else:
            w.add_uint32(k, v)
    add_tensor(w, "token_embd.weight", randn(vocab, hidden), embd_q)
    add_tensor(w, "output_norm.weight", np.ones(hidden, np.float32), Q.F32)
    if not tied:
        add_tensor(w, "output.weight", randn(vocab, hidden), embd_q)
    for b in range(blocks):
        p = f"blk.{b}"
        add_tensor(w, f"{p}.attn_norm.weight", np.ones(hidden, np.float32), Q.F32)
        add_tensor(w, f"{p}.ffn_norm.weight", np.ones(hidden, np.float32), Q.F32)
        for n, shape in [("attn_q", (q, hidden)), ("attn_k", (kv, hidden)), ("attn_v", (kv, hidden)),
                         ("attn_output", (hidden, q)), ("ffn_gate", (ffn, hidden)), ("ffn_up", (ffn, hidden)),
                         ("ffn_down", (hidden, ffn))]:
            add_tensor(w, f"{p}.{n}.weight", randn(*shape), linear_q)
        if bias:
            for n, size in [("attn_q", q), ("attn_k", kv), ("attn_v", kv)]:
                add_tensor(w, f"{p}.{n}.bias", randn(size), Q.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def field_value(f):
    """The Python value of a GGUFReader field (scalar, string or array)."""
    t = f.types[0]
    if t == GGUFValueType.ARRAY:
        sub = f.types[1]
        if sub == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8", "replace") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    if t == GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8", "replace")
    return f.parts[f.data[0]].tolist()[0]


def demo_header_seeds(out):
    """Seeds from the demo model's header. Its full header + metadata is 1.7 MB (49k tokens and
    merges), too large for a seed, so: (a) its first 32 KiB as they are, (b) its complete header
    (every metadata key, all 272 tensor infos with their real shapes and types) with the tokenizer
    arrays cut to the first 512 entries and no tensor data: `open` parses it and then must report
    the truncation, and (c) the same with the tensor infos rewritten to a tiny model plus data."""
    if not DEMO.is_file():
        print(f"note: {DEMO} not found (scripts/fetch-demo-model.sh); demo-derived seeds skipped", file=sys.stderr)
        return
    raw = DEMO.read_bytes()
    (out / "demo-head-32k.bin").write_bytes(raw[: 32 * 1024])

    r = GGUFReader(str(DEMO))
    print(f"demo: tensor data at byte {r.data_offset}, {len(r.tensors)} tensors", file=sys.stderr)
    w = GGUFWriter(str(out / "demo-header-notensordata.gguf"), "llama")
    # GGUFWriter adds general.architecture itself.
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        v = field_value(f)
        t = f.types[0]
        if t == GGUFValueType.ARRAY:
            v = v[:512]
            w.add_key_value(name, v, GGUFValueType.ARRAY, sub_type=f.types[1])
        else:
            w.add_key_value(name, v, t)
    for t in r.tensors:
        shape = [int(x) for x in t.shape]  # GGUF order (ne0 first)
        byte_shape = gguf.quants.quant_shape_to_byte_shape(tuple(reversed(shape)), t.tensor_type)
        w.add_tensor_info(t.name, byte_shape, np.dtype(np.uint8), int(t.n_bytes), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    # The writer stops right after the tensor infos: the header is all there, the data is not.


def gguf_seeds():
    out = SEEDS / "gguf"
    out.mkdir(parents=True, exist_ok=True)
    tiny_gguf(out / "tiny-llama-f32.gguf")
    tiny_gguf(out / "tiny-llama-f16-untied-2blk.gguf", linear_q=Q.F16, embd_q=Q.F16, tied=False, blocks=2,
              pre="gpt2")
    tiny_gguf(out / "tiny-llama-q8_0.gguf", hidden=32, heads=4, kv_heads=2, ffn=64, linear_q=Q.Q8_0, embd_q=Q.Q8_0)
    tiny_gguf(out / "tiny-llama-q4_0-keylen.gguf", hidden=32, heads=2, kv_heads=2, ffn=32, key_length=16,
              linear_q=Q.Q4_0, embd_q=Q.F16, pre="llama3")
    tiny_gguf(out / "tiny-qwen2-bias.gguf", arch="qwen2", bias=True, pre="qwen2", tied=False)
    tiny_gguf(out / "tiny-mistral-align64.gguf", arch="mistral", extra_kv={"general.alignment": 64})
    demo_header_seeds(out)


def st_bytes(tensors, dtype="F32"):
    """A safetensors file (written by hand so that BF16 and odd dtypes need no torch)."""
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        if dtype == "F32":
            b = arr.astype("<f4").tobytes()
        elif dtype == "F16":
            b = arr.astype("<f2").tobytes()
        elif dtype == "BF16":
            b = (arr.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
        else:
            raise ValueError(dtype)
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def hf_tensors(hidden, heads, kv_heads, head_dim, inter, layers, vocab, tied, bias):
    q, kv = heads * head_dim, kv_heads * head_dim
    t = {"model.embed_tokens.weight": randn(vocab, hidden), "model.norm.weight": np.ones(hidden, np.float32)}
    if not tied:
        t["lm_head.weight"] = randn(vocab, hidden)
    for b in range(layers):
        p = f"model.layers.{b}"
        t[f"{p}.input_layernorm.weight"] = np.ones(hidden, np.float32)
        t[f"{p}.post_attention_layernorm.weight"] = np.ones(hidden, np.float32)
        for n, shape in [("self_attn.q_proj", (q, hidden)), ("self_attn.k_proj", (kv, hidden)),
                         ("self_attn.v_proj", (kv, hidden)), ("self_attn.o_proj", (hidden, q)),
                         ("mlp.gate_proj", (inter, hidden)), ("mlp.up_proj", (inter, hidden)),
                         ("mlp.down_proj", (hidden, inter))]:
            t[f"{p}.{n}.weight"] = randn(*shape)
        if bias:
            for n, size in [("self_attn.q_proj", q), ("self_attn.k_proj", kv), ("self_attn.v_proj", kv)]:
                t[f"{p}.{n}.bias"] = randn(size)
    return t


def pack(config, st, index=b""):
    """The safetensors_dir input layout: u32 len + config.json, u32 len + safetensors, rest = index."""
    c = json.dumps(config).encode() if isinstance(config, dict) else config
    return struct.pack("<I", len(c)) + c + struct.pack("<I", len(st)) + st + index


def safetensors_seeds():
    out = SEEDS / "safetensors_dir"
    out.mkdir(parents=True, exist_ok=True)

    def model(name, *, hidden=8, heads=2, kv_heads=1, head_dim=None, inter=16, layers=1, vocab=16, tied=True,
              bias=False, dtype="F32", index=False, **extra):
        hd = head_dim or hidden // heads
        cfg = {"model_type": extra.pop("model_type", "llama"), "hidden_size": hidden, "intermediate_size": inter,
               "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
               "vocab_size": vocab, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64,
               "tie_word_embeddings": tied, "bos_token_id": 1}
        if head_dim:
            cfg["head_dim"] = head_dim
        cfg.update(extra)
        tensors = hf_tensors(hidden, heads, kv_heads, hd, inter, layers, vocab, tied, bias)
        idx = b""
        if index:
            idx = json.dumps({"metadata": {"total_size": 0},
                              "weight_map": {n: "model.safetensors" for n in tensors}}).encode()
        (out / f"{name}.bin").write_bytes(pack(cfg, st_bytes(tensors, dtype), idx))

    model("llama-f32-tied")
    model("llama-f16-untied-2layers", dtype="F16", tied=False, layers=2)
    model("llama-bf16-index", dtype="BF16", index=True)
    model("qwen2-bias", model_type="qwen2", bias=True, attention_bias=True)
    model("llama3-rope-scaling-headdim", head_dim=8, heads=2, kv_heads=2,
          rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                        "original_max_position_embeddings": 32})
    model("mistral-gqa", model_type="mistral", hidden=16, heads=4, kv_heads=2)


def plan_seeds():
    out = SEEDS / "plan_yaml"
    out.mkdir(parents=True, exist_ok=True)
    for p in sorted((ROOT / "configs" / "plans").glob("*.yaml")):
        shutil.copy(p, out / p.name)
    extra = {
        "ranges.yaml": "default: nf4\noutput: int8\noverrides:\n  - blocks: 0-1, 3\n    kinds: [attn_v, down_proj]\n"
                       "    format: int8\n  - blocks: [2]\n    format: f16\n",
        "layers.yaml": "default: f16\noverrides:\n  - layers: [blk.1.attn_q, model.layers.2.mlp.down_proj, lm_head]\n"
                       "    format: nf4\n  - blocks: 3\n    kinds: [self_attn.q_proj, ffn_gate]\n    format: int8\n",
        "flow.yaml": "{default: int8, output: f16, overrides: [{kinds: [attn_k], format: nf4}]}\n",
    }
    for name, text in extra.items():
        (out / name).write_text(text)


def config_seeds():
    out = SEEDS / "config_yaml"
    out.mkdir(parents=True, exist_ok=True)
    for p in sorted((ROOT / "configs").glob("*.yaml")):
        shutil.copy(p, out / p.name)
    (out / "full.yaml").write_text(
        "model: models/SmolLM2-135M-Instruct-Q4_1.gguf\ndevice: cpu\ndtype: f32\nplan: configs/plans/mixed.yaml\n"
        "precision: nf4\neval:\n  text: eval-data/heldout.txt\n  ctx: 256\n  max_tokens: 4096\n  kld: true\n"
        "  kld_topk: 32\nbench:\n  prompt: [128, 512]\n  gen: [32]\n  depth: 0\n  reps: 3\n  log: runs/bench.jsonl\n"
        "sensitivity:\n  budget_gb: 0.1\n  formats: [f16, int8, nf4]\n  metric: kld\n  strategy: greedy\n"
        "  calib: eval-data/calib.txt\n  calib_tokens: 2048\n  text: eval-data/heldout.txt\n  max_tokens: 2048\n"
        "  frontier_points: 8\n  out: runs/sens\n")
    (out / "anchors.yaml").write_text("eval: &e\n  ctx: 128\n  kld: false\nsensitivity:\n  formats: &f [nf4, int8]\n"
                                      "bench:\n  prompt: &p [1, 2, 3]\n  gen: *p\n")


if __name__ == "__main__":
    gguf_seeds()
    safetensors_seeds()
    plan_seeds()
    config_seeds()
    total = 0
    for p in sorted(SEEDS.rglob("*")):
        if p.is_file():
            total += p.stat().st_size
            print(f"{p.stat().st_size:>9}  {p.relative_to(ROOT)}")
    print(f"{total:>9}  total")
