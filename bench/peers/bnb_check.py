#!/usr/bin/env python3
"""Checks minilab's plan.bnb.json exports with transformers + bitsandbytes, on a GPU.

  make-tiny DIR     (numpy + safetensors; runs anywhere) a small seeded llama as a Hugging Face folder:
                    config.json, model.safetensors (f16), a byte-level tokenizer.json
  check DIR CASE... (torch, transformers, bitsandbytes; needs CUDA) CASE is NAME:CONFIG.json:PLAN.list.
                    Loads DIR with each quantization_config and checks every Linear's class and
                    weight dtype against the plan, read from minilab's --tensor-type-file list (GGUF
                    names → Hugging Face names), which is independent of llm_int8_skip_modules. Also
                    compares the logits with the f16 model. Prints one table; exit 1 on a mismatch.
"""
import json
import os
import re
import sys

HF = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
      "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
      "ffn_down": "mlp.down_proj"}


def byte_alphabet():
    # GPT-2's bytes_to_unicode: the 256 characters a byte-level BPE starts from
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return sorted(chr(c) for c in cs)


def make_tiny(out, layers=4, hidden=256, inter=512, heads=4, kv=2, seed=0):
    import numpy as np
    from safetensors.numpy import save_file
    rng = np.random.default_rng(seed)
    vocab = 257
    cfg = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": hidden,
           "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
           "num_key_value_heads": kv, "vocab_size": vocab, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "max_position_embeddings": 512, "tie_word_embeddings": False, "bos_token_id": 256, "eos_token_id": 256,
           "hidden_act": "silu", "torch_dtype": "float16"}
    hd = hidden // heads
    t = {"model.embed_tokens.weight": rng.normal(0, 1, (vocab, hidden)), "model.norm.weight": np.ones(hidden),
         "lm_head.weight": rng.normal(0, hidden ** -0.5, (vocab, hidden))}
    for l in range(layers):
        p = f"model.layers.{l}"
        t[f"{p}.input_layernorm.weight"] = 1 + rng.normal(0, 0.1, hidden)
        t[f"{p}.post_attention_layernorm.weight"] = 1 + rng.normal(0, 0.1, hidden)
        for n, o, i in [("self_attn.q_proj", heads * hd, hidden), ("self_attn.k_proj", kv * hd, hidden),
                        ("self_attn.v_proj", kv * hd, hidden), ("self_attn.o_proj", hidden, heads * hd),
                        ("mlp.gate_proj", inter, hidden), ("mlp.up_proj", inter, hidden), ("mlp.down_proj", hidden, inter)]:
            t[f"{p}.{n}.weight"] = rng.normal(0, 2 * i ** -0.5, (o, i))
    os.makedirs(out, exist_ok=True)
    save_file({k: np.ascontiguousarray(v.astype(np.float16)) for k, v in t.items()}, os.path.join(out, "model.safetensors"))
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=1)
    vocab_map = {c: i for i, c in enumerate(byte_alphabet())}
    vocab_map["<s>"] = 256
    tok = {"version": "1.0", "added_tokens": [{"id": 256, "content": "<s>", "special": True, "single_word": False,
                                                "lstrip": False, "rstrip": False, "normalized": False}],
           "normalizer": None, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                                  "use_regex": True},
           "post_processor": None, "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                                                "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                     "vocab": vocab_map, "merges": []}}
    json.dump(tok, open(os.path.join(out, "tokenizer.json"), "w"))
    print(f"wrote {out}: {layers} blocks, hidden {hidden}, {len(t)} tensors")


def plan_of(list_file):
    """HF module name → q4_0 / q8_0 / f16, from minilab's --tensor-type-file."""
    plan = {}
    for tok in open(list_file).read().split():
        pat, ty = tok.rsplit("=", 1)
        name = pat.strip("^$").replace("\\", "")
        m = re.match(r"blk\.(\d+)\.(\w+)\.weight", name)
        if m:
            plan[f"model.layers.{m.group(1)}.{HF[m.group(2)]}"] = ty
        elif name == "output.weight":
            plan["lm_head"] = ty
    return plan


def check(model_dir, *cases):
    import torch
    import transformers
    import bitsandbytes
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, bitsandbytes {bitsandbytes.__version__}, "
          f"{torch.cuda.get_device_name()}")
    ids = torch.tensor([[256, 84, 104, 101, 32, 117, 110, 105, 111, 110, 32, 105, 115]], device="cuda")
    ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float16, device_map="cuda")
    with torch.no_grad():
        ref_logp = torch.log_softmax(ref(ids).logits.float(), -1)
    del ref
    want_cls = {"q4_0": ("Linear4bit", torch.uint8), "q8_0": ("Linear8bitLt", torch.int8), "f16": ("Linear", torch.float16)}
    print("| case | config | linears | as planned | classes seen | KLD vs f16 (13 tokens) |")
    print("| --- | --- | ---: | ---: | --- | ---: |")
    failed = False
    for case in cases:
        name, cfg_path, list_path = case.split(":")
        doc = json.load(open(cfg_path))
        qc = doc.get("quantization_config", doc)
        plan = plan_of(list_path)
        try:  # exactly as the README says: BitsAndBytesConfig(**quantization_config)
            bnb_cfg = BitsAndBytesConfig(**qc)
        except Exception as e:  # noqa: BLE001 - report, then try without the key transformers sets itself
            print(f"  NOTE BitsAndBytesConfig(**config) failed ({e}); retrying without quant_method")
            failed = True
            bnb_cfg = BitsAndBytesConfig(**{k: v for k, v in qc.items() if k != "quant_method"})
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float16, device_map="cuda",
                                                     quantization_config=bnb_cfg)
        seen, bad = {}, []
        for mod_name, mod in model.named_modules():
            if not isinstance(mod, torch.nn.Linear):
                continue
            cls, dt = type(mod).__name__, mod.weight.dtype
            seen[cls] = seen.get(cls, 0) + 1
            want = want_cls[plan[mod_name]]
            if (cls, dt) != want:
                bad.append(f"{mod_name}: {cls}/{dt}, plan {plan[mod_name]}")
        missing = [m for m in plan if m not in dict(model.named_modules())]
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits.float(), -1)
        kld = (ref_logp.exp() * (ref_logp - logp)).sum(-1).mean().item()
        n = sum(seen.values())
        mode = "4-bit nf4" if qc.get("load_in_4bit") else "8-bit"
        print(f"| {name} | {mode}, {len(qc.get('llm_int8_skip_modules', []))} skipped | {n} | {n - len(bad)} | "
              f"{', '.join(f'{k} ×{v}' for k, v in sorted(seen.items()))} | {kld:.5f} |")
        for b in bad[:5] + [f"plan module {m} not in the model" for m in missing[:5]]:
            print(f"  MISMATCH {b}")
        failed |= bool(bad or missing or n != len(plan))
        del model
        torch.cuda.empty_cache()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"make-tiny": make_tiny, "check": check}[cmd](*args)
