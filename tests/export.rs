//! `minilab export`: the GGUF it writes holds the plan's tensor types and, read back by minilab's
//! own GGUF loader (which un-permutes Q/K as llama.cpp's layout requires), computes what the source
//! model computes; bad input is exit 2 with one line and leaves no file behind.
//! (bench/peers/llamacpp-export.sh checks the same files with the real llama.cpp.)

mod common;

use assert_cmd::Command;
use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device, Tensor};
use minilab::export::{self, FourBit};
use minilab::model::{self, Cache, ModelSpec};
use minilab::plan::PrecisionPlan;
use std::path::Path;

const PLAN: &str = "default: int8\noutput: f16\noverrides:\n  - kinds: [ffn_up]\n    format: nf4\n  - layers: [blk.0.attn_q]\n    format: f16\n";

fn minilab() -> Command {
    Command::cargo_bin("minilab").unwrap()
}

fn tiny(dir: &Path) -> std::path::PathBuf {
    let m = dir.join("tiny");
    std::fs::create_dir_all(&m).unwrap();
    common::tiny::write_tiny_model(&m, 7);
    m
}

fn logits(spec: &ModelSpec) -> Vec<f32> {
    let l = model::load(spec, &Device::Cpu, DType::F32).unwrap();
    let tokens = Tensor::new(&[[256u32, 3, 77, 120, 5, 250, 9, 31]], &Device::Cpu).unwrap();
    let out = l.model.forward(&tokens, 0, &mut Cache::new(l.model.n_blocks())).unwrap();
    out.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn types_in(path: &Path) -> Vec<(String, String)> {
    let mut f = std::fs::File::open(path).unwrap();
    let c = Content::read(&mut f).unwrap();
    let mut v: Vec<(String, String)> =
        c.tensor_infos.iter().map(|(n, i)| (n.clone(), format!("{:?}", i.ggml_dtype).to_lowercase())).collect();
    v.sort();
    v
}

#[test]
fn hf_folder_exports_to_a_gguf_with_the_plans_types_that_computes_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny(dir.path());
    let plan = dir.path().join("plan.yaml");
    std::fs::write(&plan, "default: f16\noutput: f16\n").unwrap();
    let out = dir.path().join("f16.gguf");
    minilab().args(["export", "--model"]).arg(&m).arg("--plan").arg(&plan).arg("--gguf").arg(&out).assert().success();
    // All f16: the only change is rounding to 16 bits, so the logits agree closely — and would
    // not if Q/K were written in the wrong row order (the loader un-permutes them).
    let a = logits(&ModelSpec::HfDir(m.clone()));
    let b = logits(&ModelSpec::Gguf(out.clone()));
    let max = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    let scale = a.iter().map(|x| x.abs()).fold(0f32, f32::max);
    assert!(max < 1e-2 * scale, "max |Δlogit| {max} vs scale {scale}");

    // A mixed plan: every weight tensor has the type tensor_types gives; norms stay f32.
    std::fs::write(&plan, PLAN).unwrap();
    let out = dir.path().join("mixed.gguf");
    minilab().args(["export", "--model"]).arg(&m).arg("--plan").arg(&plan).arg("--gguf").arg(&out).assert().success();
    let cfg = export::gguf::model_config(&ModelSpec::HfDir(m.clone())).unwrap();
    let a = PrecisionPlan::from_yaml(PLAN, "t").unwrap().resolve(&export::layer_ids(&cfg), "t").unwrap();
    let want = export::tensor_types(&a, &cfg, FourBit::Q4_0).unwrap();
    let got = types_in(&out);
    for (name, ty) in &got {
        let w = want.iter().find(|t| &t.name == name).map_or("f32", |t| t.ty.name());
        assert_eq!(ty.replace('_', ""), w.replace('_', ""), "{name}");
    }
    assert_eq!(got.len(), want.len() + 2 * cfg.num_hidden_layers + 1, "weights + norms");
    assert!(got.iter().any(|(_, t)| t == "q4_0") && got.iter().any(|(_, t)| t == "q8_0"));
    assert!(got.iter().any(|(n, t)| n == "blk.0.attn_q.weight" && t == "f16"));
}

#[test]
fn bad_input_is_exit_2_one_line_and_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny(dir.path()).display().to_string();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(&plan, PLAN).unwrap();
    let bad_plan = dir.path().join("bad.yaml");
    std::fs::write(&bad_plan, "default: int3\n").unwrap();
    let (plan, bad_plan) = (plan.display().to_string(), bad_plan.display().to_string());
    let out = dir.path().join("out.gguf");
    let o = out.display().to_string();
    let missing = dir.path().join("no/such/dir/x.gguf").display().to_string();
    let cases: [(Vec<&str>, &str); 5] = [
        (vec!["--plan", &plan, "--gguf", &o, "--gguf-4bit", "q3_k"], "--gguf-4bit"),
        (vec!["--plan", &plan, "--gguf", &o, "--gguf-4bit", "iq4_nl"], "IQ4_NL"),
        (vec!["--plan", &bad_plan, "--gguf", &o], "int3"),
        (vec!["--plan", &plan, "--gguf", &missing], "does not exist"),
        (vec!["--plan", &plan], "at least one of"),
    ];
    for (args, needle) in cases {
        let r = minilab().args(["export", "--model", &m]).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} left a file");
    }
}

#[test]
fn tensor_type_file_and_bnb_config_from_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny(dir.path());
    let plan = dir.path().join("plan.yaml");
    std::fs::write(&plan, "default: nf4\noutput: f16\noverrides:\n  - blocks: 1\n    format: f16\n").unwrap();
    let list = dir.path().join("plan.list");
    let bnb = dir.path().join("plan.bnb.json");
    minilab()
        .args(["export", "--model"])
        .arg(&m)
        .arg("--plan")
        .arg(&plan)
        .arg("--tensor-type-file")
        .arg(&list)
        .arg("--bnb")
        .arg(&bnb)
        .assert()
        .success();
    let text = std::fs::read_to_string(&list).unwrap();
    assert_eq!(text.lines().count(), 2 * 7 + 2, "untied: token_embd, output and 14 block linears");
    assert!(text.contains("^blk\\.0\\.attn_q\\.weight$=q4_0\n"));
    assert!(text.contains("^output\\.weight$=f16\n"));
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&bnb).unwrap()).unwrap();
    assert_eq!(cfg["load_in_4bit"], true);
    let skip: Vec<&str> =
        cfg["llm_int8_skip_modules"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(skip.len(), 8);
    assert!(skip.contains(&"lm_head") && skip.contains(&"model.layers.1.mlp.down_proj"));
    // a three-level plan cannot be a bitsandbytes config
    std::fs::write(&plan, PLAN).unwrap();
    let o =
        minilab().args(["export", "--model"]).arg(&m).arg("--plan").arg(&plan).arg("--bnb").arg(&bnb).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("3 levels"));
}
