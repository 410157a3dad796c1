//! Hostile input, by class (issue 13): numbers that feed indexes, ranges and allocations; writes
//! to a full, closed or failing stdout or output file; reads of endless, huge, piped or malformed
//! files; paths that try to leave their folder; configs that would give NaN metrics; commands
//! that must not materialize weights; SIGTERM. Every failing case exits with its code and one
//! `error:` line, never a panic, and changes nothing outside the folder it may write to. The hub
//! cases are in `hostile_hub.rs`.

mod common;

use common::hostile::{command, model_variant, run_all, Case, Stdout};
use common::tiny::{fixture, Fixture};
use std::path::Path;
use std::process::Stdio;

const MAX: &str = "18446744073709551615";

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `eval` on the tiny model with a short budget, then `extra`.
fn eval(f: &Fixture, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec!["eval".into()];
    if !extra.contains(&"--model") {
        v.extend(["--model".into(), s(&f.model)]);
    }
    if !extra.contains(&"--text") {
        v.extend(["--text".into(), s(&f.text)]);
    }
    // A config's values apply only where no flag overrides them.
    if !extra.contains(&"--ctx") && !extra.contains(&"-c") {
        v.extend(["--ctx", "64"].map(String::from));
    }
    if !extra.contains(&"--max-tokens") {
        v.extend(["--max-tokens", "128"].map(String::from));
    }
    v.extend(extra.iter().map(|a| a.to_string()));
    v
}

/// `bench` on the synthetic tiny model: one short prefill, no roofline, no log, then `extra`.
fn bench(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> =
        ["bench", "--model", "synthetic:tiny", "--no-roofline", "--no-log"].map(String::from).to_vec();
    if !extra.contains(&"-r") && !extra.contains(&"-c") {
        v.extend(["-r", "1"].map(String::from));
    }
    if !extra.contains(&"-p") {
        v.extend(["-p", "8"].map(String::from));
    }
    if !extra.contains(&"-n") {
        v.extend(["-n", "0"].map(String::from));
    }
    v.extend(extra.iter().map(|a| a.to_string()));
    v
}

fn case(name: &str, args: Vec<String>, code: i32, wants: &[&str]) -> Case {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Case::new(name, &refs, code, wants)
}

fn write(p: &Path, bytes: impl AsRef<[u8]>) -> String {
    std::fs::write(p, bytes).unwrap();
    s(p)
}

/// Class 1: user-controlled numbers (flags, config, plan, config.json) feeding indexes, ranges,
/// allocations and loops.
#[test]
fn hostile_numbers_exit_2_naming_the_flag_or_key() {
    let f = fixture();
    let d = f.dir.path();
    let mut cases = vec![
        case("bench -d u64::MAX", bench(&["-n", "4", "-d", MAX]), 2, &["-d", MAX]),
        case("bench -n u64::MAX", bench(&["-n", MAX]), 2, &["-n", MAX]),
        case("bench -p u64::MAX", bench(&["-p", MAX]), 2, &["-p", MAX]),
        case("bench -r u64::MAX", bench(&["-r", MAX]), 2, &["-r", MAX]),
        case("eval --ctx u64::MAX", eval(&f, &["--ctx", MAX]), 2, &["--ctx", MAX]),
        case("eval --kld-topk u64::MAX", eval(&f, &["--kld", "--kld-topk", MAX]), 2, &["--kld-topk", MAX]),
        case("eval --kld-topk 0", eval(&f, &["--kld", "--kld-topk", "0"]), 2, &["--kld-topk"]),
        case("eval --max-tokens 1", eval(&f, &["--max-tokens", "1"]), 2, &["fewer than 2 tokens"]),
    ];
    let c = write(&d.join("huge-ctx.yaml"), format!("eval:\n  ctx: {MAX}\n"));
    cases.push(case("config eval.ctx u64::MAX", eval(&f, &["-c", &c]), 2, &["--ctx", MAX]));
    let c = write(&d.join("neg-reps.yaml"), "bench:\n  reps: -1\n");
    cases.push(case("config bench.reps -1", bench(&["-c", &c]), 2, &["neg-reps.yaml"]));
    let p = write(&d.join("range.yaml"), format!("default: f16\noverrides:\n  - blocks: 0-{MAX}\n    format: int8\n"));
    cases.push(case("plan blocks 0-u64::MAX", eval(&f, &["--plan", &p]), 2, &["range.yaml", "blocks"]));
    let p = write(&d.join("block.yaml"), format!("default: f16\noverrides:\n  - blocks: [{MAX}]\n    format: int8\n"));
    cases.push(case("plan block u64::MAX", eval(&f, &["--plan", &p]), 2, &["block.yaml", "matches no layer"]));
    let variants: [(&str, &str, serde_json::Value, &str); 12] = [
        ("layers 10^12", "/num_hidden_layers", 1_000_000_000_000u64.into(), "num_hidden_layers"),
        ("positions 10^15", "/max_position_embeddings", 1_000_000_000_000_000u64.into(), "max_position_embeddings"),
        ("vocab 0", "/vocab_size", 0.into(), "vocab_size"),
        ("heads 0", "/num_attention_heads", 0.into(), "num_attention_heads"),
        ("kv heads 3", "/num_key_value_heads", 3.into(), "num_key_value_heads"),
        ("odd head_dim", "/head_dim", 15.into(), "head_dim"),
        ("hidden not a multiple of heads", "/hidden_size", 66.into(), "num_attention_heads"),
        ("rms_norm_eps 0", "/rms_norm_eps", 0.0.into(), "rms_norm_eps"),
        ("rope_theta -1", "/rope_theta", (-1.0).into(), "rope_theta"),
        ("rope factor 0", "/rope_scaling", rope(0.0, 1.0, 4.0), "rope_scaling.factor"),
        ("rope high = low", "/rope_scaling", rope(8.0, 4.0, 4.0), "high_freq_factor"),
        ("rope factor negative", "/rope_scaling", rope(-8.0, 1.0, 4.0), "rope_scaling.factor"),
    ];
    for (name, key, value, want) in variants {
        let dir = d.join(format!("cfg-{}", name.replace(' ', "-")));
        let m = model_variant(&f.model, &dir, |c| {
            c[&key[1..]] = value;
        });
        cases.push(case(&format!("config.json {name}"), eval(&f, &["--model", &m]), 2, &["config.json", want]));
    }
    run_all(&cases, d);
}

fn rope(factor: f64, low: f64, high: f64) -> serde_json::Value {
    serde_json::json!({"rope_type": "llama3", "factor": factor, "low_freq_factor": low, "high_freq_factor": high,
                       "original_max_position_embeddings": 256})
}

/// Class 2: stdout and output files that cannot be written (full, closed, a folder).
#[test]
fn failing_writes_exit_with_one_line() {
    let f = fixture();
    let d = f.dir.path();
    let inspect = |extra: &[&str]| {
        let mut v = vec!["inspect".to_string(), "--model".into(), s(&f.model)];
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let logdir = d.join("logdir");
    std::fs::create_dir(&logdir).unwrap();
    let cases = vec![
        case("inspect --json > /dev/full", inspect(&["--json"]), 1, &["stdout"]).stdout(Stdout::Full),
        case("inspect > /dev/full", inspect(&[]), 1, &["stdout"]).stdout(Stdout::Full),
        case("inspect --json >&-", inspect(&["--json"]), 1, &["stdout is closed"]).stdout(Stdout::Closed),
        case("completions bash > /dev/full", vec!["completions".into(), "bash".into()], 1, &["stdout"])
            .stdout(Stdout::Full),
        case("eval --json > /dev/full", eval(&f, &["--json"]), 1, &["stdout"]).stdout(Stdout::Full),
        case("eval >&-", eval(&f, &[]), 1, &["stdout is closed"]).stdout(Stdout::Closed),
        case("bench -o json > /dev/full", bench(&["-o", "json"]), 1, &["stdout"]).stdout(Stdout::Full),
        case("bench -o csv >&-", bench(&["-o", "csv"]), 1, &["stdout is closed"]).stdout(Stdout::Closed),
        case("bench --log /dev/full", bench_log("/dev/full"), 1, &["/dev/full"]),
        case("bench --log a folder", bench_log(&s(&logdir)), 2, &["logdir"]),
    ];
    run_all(&cases, d);

    // A failing stderr: the exit code still tells (2), and nothing panics (101).
    let cwd = tempfile::tempdir().unwrap();
    let args: Vec<String> = ["inspect", "--model", "no/such/file.gguf"].map(String::from).to_vec();
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let st = command(cwd.path(), &args).stderr(full).stdout(Stdio::null()).status().unwrap();
    assert_eq!(st.code(), Some(2), "2>/dev/full");
}

fn bench_log(path: &str) -> Vec<String> {
    let mut v = bench(&[]);
    v.retain(|a| a != "--no-log");
    v.extend(["--log".into(), path.into()]);
    v
}

/// Class 3: reads of endless, huge, piped, folder and malformed inputs.
#[test]
fn hostile_reads_are_bounded_and_read_once() {
    let f = fixture();
    let d = f.dir.path();
    let sparse = d.join("sparse.txt");
    std::fs::File::create(&sparse).unwrap().set_len(300 << 20).unwrap();
    let mut late = "word ".repeat(40_000).into_bytes();
    late.extend_from_slice(b"\xff\xfe tail");
    let late = write(&d.join("late-invalid.txt"), late);
    let blank = write(&d.join("blank.txt"), " \n\t ".repeat(30_000));
    let zero_cfg = model_variant(&f.model, &d.join("zero-config"), |_| {});
    std::fs::remove_file(d.join("zero-config/config.json")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", d.join("zero-config/config.json")).unwrap();
    let zero_tok = model_variant(&f.model, &d.join("zero-tokenizer"), |_| {});
    std::fs::remove_file(d.join("zero-tokenizer/tokenizer.json")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", d.join("zero-tokenizer/tokenizer.json")).unwrap();
    let cases = vec![
        case("--text /dev/zero", eval(&f, &["--text", "/dev/zero", "--max-tokens", MAX]), 2, &["/dev/zero", "256 MiB"]),
        case(
            "--text 300 MB file",
            eval(&f, &["--text", &s(&sparse), "--max-tokens", MAX]),
            2,
            &["sparse.txt", "--max-tokens"],
        ),
        case("--text a folder", eval(&f, &["--text", &s(d)]), 2, &[&s(d)]),
        case(
            "--text invalid UTF-8 after 200 kB",
            eval(&f, &["--text", &late, "--max-tokens", MAX]),
            2,
            &["not UTF-8", "offset 200000"],
        ),
        case("--text whitespace only", eval(&f, &["--text", &blank]), 2, &["blank.txt", "empty"]),
        case("--plan /dev/zero", eval(&f, &["--plan", "/dev/zero"]), 2, &["/dev/zero", "1 MiB"]),
        case("-c /dev/zero", eval(&f, &["-c", "/dev/zero"]), 2, &["/dev/zero", "1 MiB"]),
        case("config.json -> /dev/zero", eval(&f, &["--model", &zero_cfg]), 2, &["config.json", "64 MiB"]),
        case("tokenizer.json -> /dev/zero", eval(&f, &["--model", &zero_tok]), 2, &["tokenizer.json", "64 MiB"]),
    ];
    run_all(&cases, d);
}

/// Texts are read only as far as `--max-tokens` needs, and read once: an endless stream and a
/// 300 MB file work with a token budget, and a pipe gives the same result as the file.
#[test]
fn texts_from_pipes_and_endless_streams_work_with_a_budget() {
    let f = fixture();
    let cwd = tempfile::tempdir().unwrap();
    let run = |args: Vec<String>, stdin: Option<&Path>| {
        let mut cmd = command(cwd.path(), &args);
        cmd.stdout(Stdio::piped());
        // A real pipe, fed by a thread: not seekable, readable once.
        let feed = stdin.map(|p| std::fs::read(p).unwrap());
        if feed.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().unwrap();
        let writer = feed.map(|bytes| {
            let mut pipe = child.stdin.take().unwrap();
            std::thread::spawn(move || std::io::Write::write_all(&mut pipe, &bytes))
        });
        let o = child.wait_with_output().unwrap();
        if let Some(w) = writer {
            let _ = w.join();
        }
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let file = run(eval(&f, &["--json"]), None);
    // `< file` and `cat file |` read the same way: through /dev/stdin, once.
    let piped = run(eval(&f, &["--json", "--text", "/dev/stdin"]), Some(&f.text));
    assert_eq!(file["ppl"], piped["ppl"]);
    assert_eq!(file["tokens"], piped["tokens"]);
    let t = std::time::Instant::now();
    let zero = run(eval(&f, &["--json", "--text", "/dev/zero", "--max-tokens", "64"]), None);
    assert_eq!(zero["tokens"], 63);
    let plan = f.dir.path().join("plan.yaml");
    std::fs::write(&plan, "default: int8\n").unwrap();
    let int8 = run(eval(&f, &["--json", "--plan", "/dev/stdin"]), Some(&plan));
    assert!(int8["layers"].as_str().unwrap().contains("int8"), "{int8}");
    assert!(t.elapsed().as_secs() < 60, "bounded reads took {:?}", t.elapsed());
}

/// Class 4 (local folders): shard names from an index must stay inside the model folder.
#[test]
fn index_shard_names_cannot_leave_the_folder() {
    let f = fixture();
    let d = f.dir.path();
    let mut cases = Vec::new();
    for (name, shard) in [("parent", "../outside.safetensors"), ("absolute", "/etc/passwd"), ("nested", "a/../../x")] {
        let dir = d.join(format!("index-{name}"));
        let m = model_variant(&f.model, &dir, |_| {});
        let idx = serde_json::json!({"weight_map": {"model.embed_tokens.weight": shard}});
        std::fs::write(dir.join("model.safetensors.index.json"), idx.to_string()).unwrap();
        let args = vec!["inspect".to_string(), "--model".into(), m];
        cases.push(case(&format!("index shard {name}"), args, 2, &["leaves the model folder", shard]));
    }
    run_all(&cases, d);
}

/// Class 6: a model whose outputs are NaN never reports a NaN perplexity; a single repetition
/// never reports a NaN spread.
#[test]
fn non_finite_metrics_are_refused() {
    let f = fixture();
    let d = f.dir.path();
    let nan = d.join("nan-model");
    model_variant(&f.model, &nan, |_| {});
    let st = nan.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&st, &candle_core::Device::Cpu).unwrap();
    let head = tensors["lm_head.weight"].clone();
    tensors.insert("lm_head.weight".into(), (head * f64::NAN).unwrap());
    candle_core::safetensors::save(&tensors, &st).unwrap();
    let cases = vec![
        case("NaN weights: eval", eval(&f, &["--model", &s(&nan)]), 1, &["non-finite ppl"]),
        case("NaN weights: eval --json", eval(&f, &["--model", &s(&nan), "--json"]), 1, &["non-finite"]),
    ];
    run_all(&cases, d);
    let cwd = tempfile::tempdir().unwrap();
    let o = command(cwd.path(), &bench(&["-o", "json"])).stdout(Stdio::piped()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v[0]["stddev_ts"].as_f64().is_some_and(f64::is_finite), "{text}");
    // A decode test says how it ran: eagerly on the CPU, with or without --no-cuda-graph.
    let o = command(cwd.path(), &bench(&["-o", "json", "-n", "2", "--no-cuda-graph"]))
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v[1]["test"].as_str(), v[1]["cuda_graph"].as_bool()), (Some("tg2"), Some(false)), "{v}");
    assert!(v[0]["cuda_graph"].is_null(), "a prefill test has no decode mode: {v}");
}

/// Class 8: `inspect` reads headers only: an 8B synthetic model is described within a 2 GB
/// address-space limit, and a folder whose weights do not match its config is refused.
#[test]
fn inspect_never_materializes_weights() {
    let f = fixture();
    let cwd = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_minilab");
    let t = std::time::Instant::now();
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v 2000000 && exec '{bin}' inspect --model synthetic:llama-3.1-8b --json"))
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["layers"].as_array().unwrap().len(), 32 * 7 + 1);
    assert!(t.elapsed().as_secs() < 30, "{:?}", t.elapsed());

    let d = f.dir.path();
    let wide = model_variant(&f.model, &d.join("wide"), |c| c["intermediate_size"] = 256.into());
    let short = model_variant(&f.model, &d.join("short"), |_| {});
    let st = d.join("short/model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() - 1000]).unwrap();
    let inspect = |m: &str| vec!["inspect".to_string(), "--model".into(), m.into()];
    let cases = vec![
        case("inspect: tensor shapes differ from config.json", inspect(&wide), 2, &["wide", "shape"]),
        case("inspect: safetensors cut short", inspect(&short), 2, &["short"]),
    ];
    run_all(&cases, d);
}

/// Class 2 on a full file system: the results log and a redirected stdout fail with exit 1 and
/// one line. Needs root for a small tmpfs; skipped with a message otherwise.
#[test]
fn full_disk_writes_exit_1() {
    let Some(mnt) = common::hostile::small_tmpfs() else { return };
    let log = mnt.path().join("log.csv");
    common::hostile::fill(mnt.path());
    let cwd = tempfile::tempdir().unwrap();
    let (p, _) =
        common::hostile::run_case(&case("bench log on a full disk", bench_log(&s(&log)), 1, &["log.csv"]), cwd.path());
    assert!(p.is_empty(), "{p:?}");
    let out = std::fs::File::create(mnt.path().join("out.txt"));
    if let Ok(out) = out {
        let args = ["completions", "bash"].map(String::from);
        let o = command(cwd.path(), &args).stdout(out).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.starts_with("error: ") && err.lines().count() == 1 && !err.contains("panicked"), "{err}");
    }
}

/// Class 7: SIGTERM (timeout, systemd, Slurm, docker stop) stops a scan like Ctrl-C: exit 130,
/// the resume hint, no lock left behind.
#[test]
fn sigterm_is_handled_like_ctrl_c() {
    let f = fixture();
    let out = f.dir.path().join("run");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_minilab"));
    cmd.args(["sensitivity", "--model"]).arg(&f.model).arg("--calib").arg(&f.calib).arg("--text").arg(&f.text);
    cmd.args(["--ctx", "256", "--calib-tokens", "2048", "--max-tokens", "256", "--frontier-points", "2"]);
    cmd.args(["--baselines", "2", "--no-speed", "--budget-gb", "0.00012", "--out"]).arg(&out);
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let lines = || std::fs::read(out.join("scan.jsonl")).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count());
    while lines() < 3 && child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // SAFETY: signalling our own child, whose pid is positive.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.lines().any(|l| l.starts_with("interrupted:") && l.contains("--resume")), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.join(".lock").exists(), "lock left behind");
}
