//! The Hugging Face folder loader against candle-transformers' own llama and qwen2 (independent
//! implementations of the same HF layout, rotate-half RoPE), on a tiny seeded random model.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use minilab::model::{self, Cache, ModelSpec};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::Path;

const LAYERS: usize = 2;
const HIDDEN: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const INTER: usize = 128;
const VOCAB: usize = 256;
const HEAD_DIM: usize = HIDDEN / HEADS;
const TOKENS: [u32; 10] = [1, 17, 200, 3, 99, 42, 255, 0, 128, 7];

fn config(model_type: &str) -> serde_json::Value {
    serde_json::json!({
        "model_type": model_type,
        "architectures": [if model_type == "qwen2" { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" }],
        "hidden_size": HIDDEN, "intermediate_size": INTER, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "vocab_size": VOCAB,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 512,
        "tie_word_embeddings": false, "bos_token_id": 1, "hidden_act": "silu",
        // qwen2 fields candle-transformers' Qwen2 config requires (ignored by the llama loader)
        "sliding_window": 4096, "max_window_layers": LAYERS, "use_sliding_window": false
    })
}

/// Seeded uniform(-a, a) tensor.
fn rand_t(rng: &mut rand::rngs::StdRng, shape: &[usize], a: f32, offset: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| offset + rng.random_range(-a..a)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// The weights of a tiny llama under Hugging Face names; `biases`: q/k/v biases (qwen2 style).
fn weights(seed: u64, biases: bool) -> HashMap<String, Tensor> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut w = HashMap::new();
    let (q, kv) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
    let lin = |n_in: usize| (3.0 / n_in as f32).sqrt();
    w.insert("model.embed_tokens.weight".into(), rand_t(&mut rng, &[VOCAB, HIDDEN], 1.0, 0.0));
    for l in 0..LAYERS {
        let p = format!("model.layers.{l}");
        w.insert(format!("{p}.input_layernorm.weight"), rand_t(&mut rng, &[HIDDEN], 0.2, 1.0));
        w.insert(format!("{p}.post_attention_layernorm.weight"), rand_t(&mut rng, &[HIDDEN], 0.2, 1.0));
        for (name, out, inp) in
            [("q_proj", q, HIDDEN), ("k_proj", kv, HIDDEN), ("v_proj", kv, HIDDEN), ("o_proj", HIDDEN, q)]
        {
            w.insert(format!("{p}.self_attn.{name}.weight"), rand_t(&mut rng, &[out, inp], 2.0 * lin(inp), 0.0));
        }
        for (name, out, inp) in [("gate_proj", INTER, HIDDEN), ("up_proj", INTER, HIDDEN), ("down_proj", HIDDEN, INTER)]
        {
            w.insert(format!("{p}.mlp.{name}.weight"), rand_t(&mut rng, &[out, inp], lin(inp), 0.0));
        }
        if biases {
            for (name, out) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                w.insert(format!("{p}.self_attn.{name}.bias"), rand_t(&mut rng, &[out], 0.5, 0.0));
            }
        }
    }
    w.insert("model.norm.weight".into(), rand_t(&mut rng, &[HIDDEN], 0.2, 1.0));
    w.insert("lm_head.weight".into(), rand_t(&mut rng, &[VOCAB, HIDDEN], 4.0 * lin(HIDDEN), 0.0));
    w
}

/// Writes config.json and the tensors as one `model.safetensors`.
fn write_folder(dir: &Path, cfg: &serde_json::Value, w: &HashMap<String, Tensor>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(cfg).unwrap()).unwrap();
    candle_core::safetensors::save(w, dir.join("model.safetensors")).unwrap();
}

/// Writes config.json, the tensors split over two shards, and the index; `extra` adds index entries.
fn write_sharded(dir: &Path, cfg: &serde_json::Value, w: &HashMap<String, Tensor>, extra: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
    let mut shards: [HashMap<String, Tensor>; 2] = Default::default();
    let mut map = serde_json::Map::new();
    let mut names: Vec<&String> = w.keys().collect();
    names.sort();
    let half = names.len() / 2;
    for (i, name) in names.into_iter().enumerate() {
        let s = usize::from(i >= half);
        shards[s].insert(name.clone(), w[name].clone());
        map.insert(name.clone(), files[s].into());
    }
    for (name, file) in extra {
        map.insert(name.to_string(), (*file).into());
    }
    for (s, f) in shards.iter().zip(files) {
        assert!(!s.is_empty());
        candle_core::safetensors::save(s, dir.join(f)).unwrap();
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

fn ids() -> Tensor {
    Tensor::new(&TOKENS, &Device::Cpu).unwrap().unsqueeze(0).unwrap()
}

/// minilab's logits at every position, `[seq, vocab]`.
fn ours(dir: &Path) -> Tensor {
    let loaded = model::load(&ModelSpec::HfDir(dir.to_path_buf()), &Device::Cpu, DType::F32).unwrap();
    let m = &loaded.model;
    m.forward(&ids(), 0, &mut Cache::new(m.n_blocks())).unwrap().squeeze(0).unwrap()
}

/// candle-transformers' llama logits at every position (it returns the last one: run each prefix).
fn candle_llama(dir: &Path, w: &HashMap<String, Tensor>) -> Tensor {
    use candle_transformers::models::llama;
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let cfg = serde_json::from_str::<llama::LlamaConfig>(&text).unwrap().into_config(false);
    let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(tensors.len(), w.len());
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let m = llama::Llama::load(vb, &cfg).unwrap();
    let rows: Vec<Tensor> = (1..=TOKENS.len())
        .map(|n| {
            let mut cache = llama::Cache::new(false, DType::F32, &cfg, &Device::Cpu).unwrap();
            m.forward(&ids().narrow(1, 0, n).unwrap(), 0, &mut cache).unwrap()
        })
        .collect();
    Tensor::cat(&rows, 0).unwrap()
}

/// candle-transformers' qwen2 logits at every position.
fn candle_qwen2(dir: &Path) -> Tensor {
    use candle_transformers::models::qwen2;
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let cfg: qwen2::Config = serde_json::from_str(&text).unwrap();
    let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let head = tensors["lm_head.weight"].clone();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let mut m = qwen2::Model::new(&cfg, vb).unwrap();
    let hidden = m.forward(&ids(), 0, None).unwrap().squeeze(0).unwrap();
    hidden.matmul(&head.t().unwrap()).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

fn max_abs(a: &Tensor) -> f32 {
    a.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

#[test]
fn llama_folder_matches_candle_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    let w = weights(11, false);
    write_folder(tmp.path(), &config("llama"), &w);
    let (a, b) = (ours(tmp.path()), candle_llama(tmp.path(), &w));
    assert_eq!(a.dims(), [TOKENS.len(), VOCAB]);
    let d = max_abs_diff(&a, &b);
    eprintln!("llama: max |Δlogit| = {d:.2e} over {} positions (max |logit| {:.2})", TOKENS.len(), max_abs(&b));
    assert!(max_abs(&b) > 1.0, "logits too small to be a meaningful comparison");
    assert!(d <= 1e-4, "max |Δlogit| = {d}");
}

#[test]
fn sharded_folder_loads_to_identical_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let w = weights(11, false);
    let (single, sharded) = (tmp.path().join("single"), tmp.path().join("sharded"));
    write_folder(&single, &config("llama"), &w);
    write_sharded(&sharded, &config("llama"), &w, &[]);
    assert!(!sharded.join("model.safetensors").exists());
    let d = max_abs_diff(&ours(&single), &ours(&sharded));
    assert_eq!(d, 0.0, "sharded and single-file logits differ by {d}");
}

#[test]
fn sharded_index_naming_a_missing_shard_is_an_input_error() {
    let tmp = tempfile::tempdir().unwrap();
    let w = weights(11, false);
    write_sharded(tmp.path(), &config("llama"), &w, &[("model.extra.weight", "model-00003-of-00003.safetensors")]);
    let err = model::load(&ModelSpec::HfDir(tmp.path().to_path_buf()), &Device::Cpu, DType::F32)
        .err()
        .expect("a missing shard must fail the load");
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 2, "{msg}");
    assert!(msg.contains("model-00003-of-00003.safetensors"), "the error must name the missing file: {msg}");
    assert!(!msg.contains('\n'), "one line: {msg:?}");
}

#[test]
fn qwen2_biases_load_and_matter() {
    let tmp = tempfile::tempdir().unwrap();
    let (with, zero, plain) = (tmp.path().join("bias"), tmp.path().join("zero"), tmp.path().join("llama"));
    let w = weights(23, true);
    write_folder(&with, &config("qwen2"), &w);
    // the same weights with all-zero biases
    let zeroed: HashMap<String, Tensor> = w
        .iter()
        .map(|(k, t)| (k.clone(), if k.ends_with(".bias") { t.zeros_like().unwrap() } else { t.clone() }))
        .collect();
    write_folder(&zero, &config("qwen2"), &zeroed);
    // and the same model without bias tensors, as a plain llama
    let no_bias: HashMap<String, Tensor> =
        w.iter().filter(|(k, _)| !k.ends_with(".bias")).map(|(k, t)| (k.clone(), t.clone())).collect();
    write_folder(&plain, &config("llama"), &no_bias);

    let (a, b) = (ours(&with), candle_qwen2(&with));
    let d = max_abs_diff(&a, &b);
    eprintln!("qwen2 with biases: max |Δlogit| vs candle-transformers = {d:.2e}");
    assert!(d <= 1e-4, "qwen2: max |Δlogit| = {d}");

    let z = ours(&zero);
    let effect = max_abs_diff(&a, &z);
    assert!(effect > 1e-2, "biases change the logits by only {effect}");
    let same = max_abs_diff(&z, &ours(&plain));
    assert!(same <= 1e-5, "zero biases must equal no biases, got {same}");
}
