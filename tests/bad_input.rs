//! Bad input on the command line: every case exits 2 with exactly one `error:` line on stderr that
//! names the offending file, entry or flag, never a panic or a backtrace, and writes no output file.

mod common;

use assert_cmd::Command;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One bad invocation and the substrings its error line must contain.
struct Case {
    name: &'static str,
    args: Vec<String>,
    wants: Vec<String>,
    /// Environment variables set for the run.
    env: Vec<(&'static str, &'static str)>,
}

fn s(x: impl AsRef<std::ffi::OsStr>) -> String {
    x.as_ref().to_string_lossy().into_owned()
}

fn model() -> String {
    s(common::demo_model())
}

fn heldout() -> String {
    s(common::repo("eval-data/heldout.txt"))
}

/// `eval` on the demo model and the held-out text with a short token budget, plus `extra` (whose
/// `--model`/`--text` replace the defaults).
fn eval_args(extra: &[&str]) -> Vec<String> {
    let mut v = vec!["eval".to_string()];
    if !extra.contains(&"--model") {
        v.extend(["--model".into(), model()]);
    }
    if !extra.contains(&"--text") {
        v.extend(["--text".into(), heldout()]);
    }
    v.extend(["--max-tokens".into(), "64".into()]);
    v.extend(extra.iter().map(|a| a.to_string()));
    v
}

/// A Hugging Face config.json for a 2-layer llama, as a JSON value.
fn hf_config() -> serde_json::Value {
    serde_json::json!({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 512,
        "tie_word_embeddings": false
    })
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> String {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
    s(path)
}

fn cases(inp: &Path) -> Vec<Case> {
    let mut out = Vec::new();
    let mut add = |name: &'static str, args: Vec<String>, wants: &[&str]| {
        out.push(Case { name, args, wants: wants.iter().map(|w| w.to_string()).collect(), env: vec![] });
    };

    let missing = s(inp.join("no-such-model.gguf"));
    add("missing model path", eval_args(&["--model", &missing]), &["no-such-model.gguf"]);

    let mut head = Vec::new();
    std::fs::File::open(common::demo_model()).unwrap().take(1 << 20).read_to_end(&mut head).unwrap();
    let trunc = write(&inp.join("truncated.gguf"), head);
    add("truncated GGUF", eval_args(&["--model", &trunc]), &["truncated.gguf"]);

    let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let garbage = write(&inp.join("garbage.gguf"), garbage);
    add("GGUF of garbage bytes", eval_args(&["--model", &garbage]), &["garbage.gguf"]);

    // A Hugging Face folder whose safetensors header length says 2^63 bytes.
    let hf_bad = inp.join("hf-corrupt");
    write(&hf_bad.join("config.json"), hf_config().to_string());
    let mut st = u64::MAX.to_le_bytes().to_vec();
    st.extend_from_slice(b"{\"garbage\": ");
    write(&hf_bad.join("model.safetensors"), st);
    add(
        "safetensors with a corrupt header",
        eval_args(&["--model", &s(&hf_bad)]),
        &["hf-corrupt", "model.safetensors"],
    );

    // A valid header whose data section is cut short.
    let hf_short = inp.join("hf-short");
    write(&hf_short.join("config.json"), hf_config().to_string());
    let t = candle_core::Tensor::ones((256, 64), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    let full = hf_short.join("full.safetensors");
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("model.embed_tokens.weight".to_string(), t)]),
        &full,
    )
    .unwrap();
    let bytes = std::fs::read(&full).unwrap();
    std::fs::remove_file(&full).unwrap();
    write(&hf_short.join("model.safetensors"), &bytes[..bytes.len() / 2]);
    add("safetensors cut short", eval_args(&["--model", &s(&hf_short)]), &["hf-short", "model.safetensors"]);

    let hf_nolayers = inp.join("hf-nolayers");
    let mut cfg = hf_config();
    cfg.as_object_mut().unwrap().remove("num_hidden_layers");
    write(&hf_nolayers.join("config.json"), cfg.to_string());
    write(&hf_nolayers.join("model.safetensors"), b"");
    add(
        "config.json missing num_hidden_layers",
        eval_args(&["--model", &s(&hf_nolayers)]),
        &["config.json", "num_hidden_layers"],
    );

    let p = write(
        &inp.join("unknown-layer.yaml"),
        "default: f16\noverrides:\n  - layers: [blk.99.attn_q]\n    format: int8\n",
    );
    add("plan with an unknown layer", eval_args(&["--plan", &p]), &["unknown-layer.yaml", "blk.99.attn_q"]);

    let p = write(&inp.join("unknown-format.yaml"), "default: q5\n");
    add("plan with an unknown format", eval_args(&["--plan", &p]), &["unknown-format.yaml", "q5"]);

    let p = write(&inp.join("unknown-key.yaml"), "default: nf4\nbogus_key: 1\n");
    add("plan with an unknown key", eval_args(&["--plan", &p]), &["unknown-key.yaml", "bogus_key"]);

    let t = write(&inp.join("empty.txt"), "");
    add("empty text file", eval_args(&["--text", &t]), &["empty.txt"]);

    let t = write(&inp.join("latin1.txt"), b"caf\xe9 au lait \xff\xfe\n");
    add("non-UTF-8 text file", eval_args(&["--text", &t]), &["latin1.txt"]);

    add("--ctx beyond the model's context", eval_args(&["--ctx", "100000"]), &["--ctx", "100000"]);
    add("--ctx 1", eval_args(&["--ctx", "1"]), &["--ctx"]);
    add("--precision q5", eval_args(&["--precision", "q5"]), &["--precision", "q5"]);
    #[cfg(not(feature = "cuda"))]
    add("--device cuda without the cuda feature", eval_args(&["--device", "cuda"]), &["rebuild with --features cuda"]);
    add("--device tpu", eval_args(&["--device", "tpu"]), &["tpu"]);

    let log = s(inp.join("out/bench-log.csv"));
    let bench = |extra: &[&str]| {
        let mut v: Vec<String> =
            ["bench", "--model", &model(), "--no-roofline", "--log", &log].map(String::from).to_vec();
        v.extend(extra.iter().map(|a| a.to_string()));
        v
    };
    add("bench -p 0 -n 0", bench(&["-p", "0", "-n", "0"]), &["-p", "-n"]);
    add("bench -r 0", bench(&["-p", "8", "-n", "0", "-r", "0"]), &["-r"]);

    let c = write(&inp.join("bad-config.yaml"), "eval:\n  ctx: 128\n  ctxx: 5\n");
    add("config with an unknown key", eval_args(&["-c", &c]), &["bad-config.yaml", "ctxx"]);

    add("unknown synthetic model", eval_args(&["--model", "synthetic:nope"]), &["nope"]);
    add("eval refuses synthetic weights", eval_args(&["--model", "synthetic:tiny"]), &["synthetic"]);
    // A mistyped setting in the environment, which the kernels would otherwise ignore silently.
    for (var, value) in [
        ("MINILAB_ATTENTION", "Split"),
        ("MINILAB_FUSE_NORM", "true"),
        ("MINILAB_HUB_TIMEOUT_S", "0"),
        ("MINILAB_QGEMM", "256"),
    ] {
        let wants = vec![var.to_string(), value.to_string()];
        out.push(Case {
            name: "a MINILAB_ variable with a bad value",
            args: eval_args(&[]),
            wants,
            env: vec![(var, value)],
        });
    }
    // two settings that pick different kernels for the same launch
    out.push(Case {
        name: "staging and prefetching the decode GEMVs at once",
        args: eval_args(&[]),
        wants: vec!["MINILAB_GEMV_STAGED=1".into(), "MINILAB_PREFETCH=bulk".into()],
        env: vec![("MINILAB_GEMV_STAGED", "1"), ("MINILAB_PREFETCH", "bulk")],
    });
    out.push(Case {
        name: "chunked dequantizing and the qgemm prefill at once",
        args: eval_args(&[]),
        wants: vec!["MINILAB_PREFILL_CHUNK_MB=8".into(), "MINILAB_QGEMM=on".into()],
        env: vec![("MINILAB_PREFILL_CHUNK_MB", "8"), ("MINILAB_QGEMM", "on")],
    });
    out
}

/// Every file under `dir`, relative.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out.sort();
    out
}

#[test]
fn bad_input_exits_2_with_one_error_line() {
    let inputs = tempfile::tempdir().unwrap();
    let cases = cases(inputs.path());
    let before_inputs = files_under(inputs.path());
    let mut failures = Vec::new();
    for case in &cases {
        // A fresh, empty working directory per case: any file the command writes shows up there.
        let cwd = tempfile::tempdir().unwrap();
        let out = Command::cargo_bin("minilab")
            .unwrap()
            .args(&case.args)
            .current_dir(cwd.path())
            .env("RUST_BACKTRACE", "1")
            .env_remove("RUST_LOG")
            .envs(case.env.iter().copied())
            .timeout(std::time::Duration::from_secs(120))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = stderr.lines().collect();
        let mut problems = Vec::new();
        if out.status.code() != Some(2) {
            problems.push(format!("exit code {:?}, expected 2", out.status.code()));
        }
        if lines.len() != 1 || !lines[0].starts_with("error:") {
            problems.push(format!("stderr is not exactly one `error:` line ({} lines)", lines.len()));
        }
        // The last three catch a captured backtrace printed inside an error message (candle's
        // `Error::WithBacktrace` displays its frames when RUST_BACKTRACE is set).
        for bad in
            ["panicked", "RUST_BACKTRACE", "stack backtrace", "Error::bt", "rust_begin_short_backtrace", "lang_start"]
        {
            if stderr.contains(bad) {
                problems.push(format!("stderr contains `{bad}`"));
            }
        }
        for want in &case.wants {
            if !stderr.contains(want.as_str()) {
                problems.push(format!("error does not name `{want}`"));
            }
        }
        if !stdout.is_empty() {
            problems.push(format!("stdout is not empty: {stdout:?}"));
        }
        let written = files_under(cwd.path());
        if !written.is_empty() {
            problems.push(format!("wrote files in the working directory: {written:?}"));
        }
        if !problems.is_empty() {
            let shown: String = stderr.chars().take(600).collect();
            failures.push(format!(
                "[{}] minilab {}\n    {}\n    stderr: {shown:?}",
                case.name,
                case.args.join(" "),
                problems.join("; ")
            ));
        } else {
            eprintln!("ok  [{}] {}", case.name, lines[0]);
        }
    }
    let after_inputs = files_under(inputs.path());
    if after_inputs != before_inputs {
        failures.push(format!(
            "files appeared next to the inputs: {:?}",
            after_inputs.iter().filter(|p| !before_inputs.contains(p)).collect::<Vec<_>>()
        ));
    }
    assert!(failures.is_empty(), "{} bad-input case(s) failed:\n{}", failures.len(), failures.join("\n"));
}
