#!/usr/bin/env python3
"""PyTorch + transformers (+ bitsandbytes) at minilab's synthetic shape, batch 1, on one GPU.

Measures what `minilab bench` measures, the same way: pp512 (one forward over 512 prompt tokens) and
tg128 (128 single-token decode steps with a KV cache from an empty context), a warm-up, then REPS
timed runs, the GPU synchronized before every clock read; median and spread reported. Weights are
random (seeded), like minilab's `synthetic:` models, in the Llama-3.2-3B architecture.

Variants: bf16 eager (DynamicCache); bf16 static cache + torch.compile; `static`: the hand-written
static-cache forward of torch_static.py, its decode step compiled with mode="reduce-overhead" (one CUDA
graph) and its prefill compiled too; bitsandbytes NF4 (bf16 compute); bitsandbytes LLM.int8. bitsandbytes is not in the GPU image: carry it as a wheel or an
unpacked folder on PYTHONPATH (bench/gpu-issue5.sh does).

Usage: python3 bench/peers/torch_bnb.py [--variants bf16,compile,static,nf4,int8] [--reps 3] [--json OUT]
"""
import argparse
import json
import statistics
import sys
import tempfile
import time

import torch


def llama_3b_config():
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
        num_attention_heads=24, num_key_value_heads=8, head_dim=128, max_position_embeddings=4096,
        rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True,
    )


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, reps):
    fn()  # warm-up
    samples = []
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - t)
    return samples


def bench_model(model, reps, static=False):
    dev = "cuda"
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(1, 128000, (1, 512), generator=gen).to(dev)
    one = torch.randint(1, 128000, (1, 1), generator=gen).to(dev)

    @torch.inference_mode()
    def pp():
        model(prompt, use_cache=False)

    from transformers import DynamicCache, StaticCache

    static_cache = None
    if static:
        # One cache for every run, reset in place: CUDA graphs replay on fixed addresses.
        try:
            static_cache = StaticCache(config=model.config, max_cache_len=256)
        except TypeError:
            static_cache = StaticCache(config=model.config, max_batch_size=1, max_cache_len=256, device=dev,
                                       dtype=torch.bfloat16)

    @torch.inference_mode()
    def tg():
        if static_cache is not None:
            static_cache.reset()
            cache = static_cache
        else:
            cache = DynamicCache()
        for pos in range(128):
            cache_position = torch.tensor([pos], device=dev)
            model(one, past_key_values=cache, use_cache=True, cache_position=cache_position)

    out = {}
    pp_s = timed(pp, reps)
    out["pp512"] = [512 / s for s in pp_s]
    tg_s = timed(tg, reps)
    out["tg128"] = [128 / s for s in tg_s]
    return out


def bench_static(model, reps):
    """pp512 and tg128 of torch_static.StaticLlama: prefill compiled for its one shape, decode steps
    compiled into a CUDA graph; positions live on the GPU, so a step copies nothing from the host."""
    import torch_static

    dev, vocab = model.k_cache.device, model.embed.shape[0]
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(1, vocab, (1, 512), generator=gen).to(dev)
    one = torch.randint(1, vocab, (1, 1), generator=gen).to(dev)
    prefill = torch.compile(model.forward, fullgraph=True)
    step = torch_static.compiled_step(model)
    span = torch.arange(512, device=dev)
    positions = [torch.tensor([p], device=dev) for p in range(128)]

    @torch.inference_mode()
    def pp():
        prefill(prompt, span)

    @torch.inference_mode()
    def tg():
        for p in positions:  # stale cache entries past p are masked, so no reset is needed
            step(one, p)

    return {"pp512": [512 / s for s in timed(pp, reps)], "tg128": [128 / s for s in timed(tg, reps)]}


def load_variant(name, path):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if name in ("bf16", "compile", "static"):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).to("cuda")
    elif name == "nf4":
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(path, quantization_config=q, device_map="cuda")
    elif name == "int8":
        q = BitsAndBytesConfig(load_in_8bit=True)
        model = AutoModelForCausalLM.from_pretrained(path, quantization_config=q, device_map="cuda",
                                                     dtype=torch.bfloat16)
    else:
        raise SystemExit(f"unknown variant {name}")
    model.eval()
    if name == "compile":
        model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="bf16,compile,static,nf4,int8")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--model-dir", help="where the random bf16 model is saved (made if missing; default: a temp dir)")
    ap.add_argument("--json")
    args = ap.parse_args()
    tmp = None
    path = args.model_dir
    if path is None:
        tmp = tempfile.TemporaryDirectory()
        path = tmp.name
    import os

    if not os.path.exists(os.path.join(path, "config.json")):
        from transformers import LlamaForCausalLM

        torch.manual_seed(0)
        with torch.device("cuda"):
            model = LlamaForCausalLM(llama_3b_config()).to(torch.bfloat16)
        # minilab's synthetic weights: N(0, 0.02²), norms ≈ 1 (transformers' init matches).
        model.save_pretrained(path)
        del model
        torch.cuda.empty_cache()
    results = {}
    for name in args.variants.split(","):
        t = time.perf_counter()
        model = None
        try:
            model = load_variant(name, path)
            if name == "static":
                import torch_static

                results[name] = bench_static(torch_static.StaticLlama(model, max_len=640), args.reps)
            else:
                results[name] = bench_model(model, args.reps, static=(name == "compile"))
            results[name]["weight_bytes"] = model.get_memory_footprint()
        except Exception as e:  # report and go on: one missing peer must not hide the others
            results[name] = {"error": f"{type(e).__name__}: {e}"}
        finally:
            model = None
            torch.cuda.empty_cache()
        print(f"{name}: done in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    print("| variant | pp512 t/s (median, min–max) | tg128 t/s (median, min–max) | weights GB |")
    print("| --- | ---: | ---: | ---: |")
    for name, r in results.items():
        if "error" in r:
            print(f"| {name} | {r['error'][:80]} | | |")
            continue
        cell = lambda v: f"{statistics.median(v):.1f} ({min(v):.1f}–{max(v):.1f})"
        print(f"| {name} | {cell(r['pp512'])} | {cell(r['tg128'])} | {r['weight_bytes'] / 1e9:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "gpu": torch.cuda.get_device_name(), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
