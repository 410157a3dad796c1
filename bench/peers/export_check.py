#!/usr/bin/env python3
"""Helpers of bench/peers/llamacpp-export.sh, on the `gguf` PyPI package (llama.cpp's own reader).

  check FILE.gguf PLAN.list   every tensor of FILE has the type the --tensor-type-file gives it
                              (with llama-quantize's regex-search semantics, exactly one pattern per
                              weight tensor); 1-D tensors match none and are f32. Exit 1 otherwise.
  same A.gguf B.gguf          the two files hold bit-identical tensors (names, types, shapes, bytes).
  to-hf FILE.gguf DIR         writes DIR as a Hugging Face folder (config.json, tokenizer.json,
                              model.safetensors in f32, Q/K un-permuted) of a llama GGUF.
  table OUTDIR                prints the markdown table of the llama-perplexity logs and minilab JSON.
"""
import json
import os
import re
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def rules_of(list_file):
    rules = []
    for tok in open(list_file).read().split():
        pat, ty = tok.rsplit("=", 1)
        rules.append((re.compile(pat), ty.lower()))
    return rules


def check(path, list_file):
    rules = rules_of(list_file)
    bad, counts, norms, used = [], {}, 0, set()
    for t in GGUFReader(path).tensors:
        ty = t.tensor_type.name.lower()
        hits = [(i, want) for i, (r, want) in enumerate(rules) if r.search(t.name)]
        used.update(i for i, _ in hits)
        if len(hits) > 1:
            bad.append(f"{t.name}: {len(hits)} patterns match")
        elif len(hits) == 1 and hits[0][1] != ty:
            bad.append(f"{t.name}: {ty}, plan says {hits[0][1]}")
        elif not hits and (len(t.shape) != 1 or ty != "f32"):
            bad.append(f"{t.name}: no pattern, type {ty}, shape {list(t.shape)}")
        if hits:
            counts[ty] = counts.get(ty, 0) + 1
        else:
            norms += 1
    unused = [rules[i][0].pattern for i in range(len(rules)) if i not in used]
    bad += [f"pattern {p} matches no tensor" for p in unused]
    mix = ", ".join(f"{k} ×{v}" for k, v in sorted(counts.items()))
    if bad:
        print(f"FAIL {path}: {len(bad)} problems; first: " + "; ".join(bad[:8]))
        sys.exit(1)
    print(f"ok {os.path.basename(path)}: {sum(counts.values())} weight tensors have the plan's type ({mix}); {norms} norms f32")


def same(a, b):
    ta = {t.name: t for t in GGUFReader(a).tensors}
    tb = {t.name: t for t in GGUFReader(b).tensors}
    diff = [n for n in ta if n not in tb or ta[n].tensor_type != tb[n].tensor_type
            or list(ta[n].shape) != list(tb[n].shape) or ta[n].data.tobytes() != tb[n].data.tobytes()]
    diff += [n for n in tb if n not in ta]
    if diff:
        print(f"FAIL {a} vs {b}: {len(diff)} tensors differ, e.g. {diff[:5]}")
        sys.exit(1)
    print(f"ok {os.path.basename(a)} and {os.path.basename(b)}: {len(ta)} tensors bit-identical")


def field(r, key):
    f = r.fields.get(key)
    if f is None:
        return None
    v = f.contents()
    return v


HF = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
      "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
      "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def unpermute(w, heads):
    # GGUF rows (head, pair, 2) -> Hugging Face rows (head, 2, pair), as convert_hf_to_gguf inverts
    out, rest = w.shape[0], int(np.prod(w.shape[1:]))
    return w.reshape(heads, out // heads // 2, 2, rest).swapaxes(1, 2).reshape(w.shape)


def to_hf(path, out):
    from safetensors.numpy import save_file
    r = GGUFReader(path)
    a = field(r, "general.architecture")
    g = lambda k, d=None: field(r, f"{a}.{k}") if field(r, f"{a}.{k}") is not None else d
    heads, kv = int(g("attention.head_count")), int(g("attention.head_count_kv", g("attention.head_count")))
    names = {t.name for t in r.tensors}
    tensors = {}
    for t in r.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(d) for d in reversed(t.shape)])
        parts = t.name.split(".")
        if parts[0] == "blk":
            if parts[2] == "attn_q":
                w = unpermute(w, heads)
            elif parts[2] == "attn_k":
                w = unpermute(w, kv)
            name = f"model.layers.{parts[1]}.{HF[parts[2]]}.{parts[3]}"
        else:
            name = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                    "output.weight": "lm_head.weight"}[t.name]
        tensors[name] = np.ascontiguousarray(w)
    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "model.safetensors"))
    toks = field(r, "tokenizer.ggml.tokens")
    cfg = {"model_type": a, "architectures": ["LlamaForCausalLM"], "hidden_size": int(g("embedding_length")),
           "intermediate_size": int(g("feed_forward_length")), "num_hidden_layers": int(g("block_count")),
           "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": len(toks),
           "rms_norm_eps": float(g("attention.layer_norm_rms_epsilon")), "rope_theta": float(g("rope.freq_base", 10000.0)),
           "max_position_embeddings": int(g("context_length")), "tie_word_embeddings": "output.weight" not in names,
           "bos_token_id": int(field(r, "tokenizer.ggml.bos_token_id")),
           "eos_token_id": int(field(r, "tokenizer.ggml.eos_token_id")), "torch_dtype": "float32"}
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=1)
    types = field(r, "tokenizer.ggml.token_type")
    added = [{"id": i, "content": s, "special": True} for i, (s, ty) in enumerate(zip(toks, types)) if ty == 3]
    tok = {"version": "1.0", "added_tokens": added, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False},
           "decoder": {"type": "ByteLevel"},
           "model": {"type": "BPE", "vocab": {s: i for i, s in enumerate(toks)}, "merges": field(r, "tokenizer.ggml.merges")}}
    json.dump(tok, open(os.path.join(out, "tokenizer.json"), "w"))
    print(f"wrote {out}: {len(tensors)} tensors (f32), vocab {len(toks)}")


def parse_log(path):
    text = open(path, errors="replace").read()
    num = r"([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"
    def grab(p):
        m = re.search(p, text)
        return float(m.group(1)) if m else None
    ppl = grab(r"Mean PPL\(Q\)\s*:\s*" + num) or grab(r"Final estimate: PPL = " + num)
    return {"ppl": ppl, "kld": grab(r"Mean\s+KLD:\s*" + num), "median": grab(r"Median\s+KLD:\s*" + num),
            "p99": grab(r"99\.0%\s+KLD:\s*" + num), "top1": grab(r"Same top p:\s*" + num)}


def table(out):
    mine = json.load(open(os.path.join(out, "minilab-eval.json")))
    k = mine["kld"]
    fmt = lambda x, f="{:.5f}": "" if x is None else f.format(x)
    print("| model | nf4 layers as | PPL | KLD mean vs F16 | median | p99 | same top token | |KLD − minilab's| |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| minilab eval (its nf4) | nf4 | {mine['ppl']:.3f} | {k['mean']:.5f} | {k['median']:.5f} | {k['p99']:.4f} | "
          f"{100 * k['top1_agreement']:.2f} % | |")
    f16 = parse_log(os.path.join(out, "ppl-f16.log"))
    print(f"| llama.cpp F16 file | | {fmt(f16['ppl'], '{:.3f}')} | 0 | 0 | 0 | 100 % | |")
    for name, label in [("lq-q4_0", "q4_0"), ("lq-iq4_nl", "iq4_nl"), ("lq-q4_k", "q4_k (q5_0 where rows ≠ 256k)"),
                        ("minilab-q4_0", "q4_0"), ("minilab-q4_k", "q4_k (q5_0 where rows ≠ 256k)"),
                        ("minilab-hf-q4_0", "q4_0")]:
        p = os.path.join(out, f"ppl-{name}.log")
        if not os.path.exists(p):
            continue
        v = parse_log(p)
        who = {"lq": "llama-quantize --tensor-type-file", "minilab": "minilab export --gguf",
               "minilab-hf": "minilab export --gguf (HF folder input)"}[name.rsplit("-", 1)[0]]
        gap = "" if v["kld"] is None else f"{abs(v['kld'] - k['mean']):.5f}"
        print(f"| {who} | {label} | {fmt(v['ppl'], '{:.3f}')} | {fmt(v['kld'])} | {fmt(v['median'])} | "
              f"{fmt(v['p99'], '{:.4f}')} | {fmt(v['top1'], '{:.2f}')} % | {gap} |")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"check": check, "same": same, "to-hf": to_hf, "table": table}[cmd](*args)
