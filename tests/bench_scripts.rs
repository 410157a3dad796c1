//! The bench scripts that run here, without a GPU: `bench/kernels/sass_table.py` and `ahead_sass.py`
//! on small SASS fixtures (tests/fixtures/sass), `bench/peers/side_by_side.py` on JSON written by the test,
//! `bench/kernels/flash_sim.py` (flash.cu's index arithmetic, emulated), `bench/unxz.sh` (how the GPU
//! calls unpack their carried binaries). They need python3 and bash, as the README's test command's
//! machine has.

use std::process::Command;

fn sass_table(args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .arg("bench/kernels/sass_table.py")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 runs")
}

/// The row of `kernel` in the table printed on stdout.
fn row<'a>(out: &'a str, kernel: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("| {kernel} |")))
        .unwrap_or_else(|| panic!("no row for {kernel}:\n{out}"))
}

#[test]
fn sass_table_reads_the_resources_and_when_the_loads_go_out() {
    let out = sass_table(&["tests/fixtures/sass/two.sass", "tests/fixtures/sass/two.ptxas.txt"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = String::from_utf8(out.stdout).unwrap();
    // the NF4 loop uses its first weights after two of its four weight loads, and loads its absmax
    // after that; one xs load, one table lookup
    assert!(
        row(&out, "gemv_nf4_bf16_m1_r2")
            .starts_with("| gemv_nf4_bf16_m1_r2 | 64 | 0 | 0 | 4 | 1 | 1 | 2 of 4 | 0 of 1 | 1 |"),
        "{out}"
    );
    // the dense loop has all four loads out first; its spills (4 + 4 bytes) come from ptxas' report
    assert!(
        row(&out, "gemv_dense_bf16_m1_r2")
            .starts_with("| gemv_dense_bf16_m1_r2 | 56 | 8 | 0 | 4 | 1 | 0 | 4 of 4 | 0 of 0 | 0 |"),
        "{out}"
    );
}

#[test]
fn sass_table_says_when_no_kernel_matches() {
    let out = sass_table(&["tests/fixtures/sass/two.sass", "tests/fixtures/sass/two.ptxas.txt", "--filter", "int8"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no gemv kernel matches"));
}

fn ahead_sass(sass: &str, ptxas: &str) -> std::process::Output {
    Command::new("python3")
        .args(["bench/kernels/ahead_sass.py", sass, ptxas])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 runs")
}

#[test]
fn ahead_sass_reads_the_consumers_loop_and_its_ceilings() {
    let out = ahead_sass("tests/fixtures/sass/ahead.sass", "tests/fixtures/sass/ahead.ptxas.txt");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = String::from_utf8(out.stdout).unwrap();
    // ahead::kernel<NF4, R 2, 8 warps, 4 slots, 1024 bytes, 2 blocks an SM>: the consumers' loop (two
    // slot reads, two table lookups, one xs load, 10 instructions for a warp's step of 2 × 32 × 32
    // weights), not the producer's wait loops; at 3.02 TB/s an SM needs 20.5 NF4 weights a clock,
    // the loop issues 4 · 2048 / 10 (3988 %) and moves 2944 bytes through shared memory and L1 for
    // 2048 (433 %)
    let want = "| nf4 | 2 | 8 | 4 | 1024 | 2 | 79 | 0 | 0.16 | 2 | 2 | 1 | 1.44 | 3988 % | 433 % |";
    assert!(out.lines().any(|l| l == want), "{out}");
}

#[test]
fn ahead_sass_says_when_no_ahead_kernel_is_there() {
    let out = ahead_sass("tests/fixtures/sass/two.sass", "tests/fixtures/sass/two.ptxas.txt");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no ahead kernel"));
}

#[test]
fn the_sass_tables_call_an_unreadable_input_bad_input() {
    // both scripts read their inputs through sass_table.py's read_inputs: exit 2, one error line
    for out in [
        ahead_sass("tests/fixtures/sass/missing.sass", "tests/fixtures/sass/ahead.ptxas.txt"),
        sass_table(&["tests/fixtures/sass/two.sass", "tests/fixtures/sass/missing.ptxas.txt"]),
    ] {
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("error: cannot read tests/fixtures/sass/missing."), "{err}");
        assert!(!err.contains("Traceback"), "{err}");
    }
}

fn side_by_side(dir: &std::path::Path) -> String {
    let out = Command::new("python3")
        .arg("bench/peers/side_by_side.py")
        .arg(dir)
        .arg("m")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn side_by_side_takes_llama_benchs_median_and_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| std::fs::write(dir.path().join(name), body).unwrap();
    // llama-bench's first pp repetition is slow; its mean (30) would give a ratio of 2.00
    write(
        "llama-bench-m-F16.json",
        r#"[{"n_prompt": 512, "n_gen": 0, "avg_ts": 30.0, "stddev_ts": 17.3, "samples_ts": [10.0, 40.0, 40.0],
             "model_size": 6430000000},
            {"n_prompt": 0, "n_gen": 128, "avg_ts": 5.0, "stddev_ts": 0.0}]"#,
    );
    write(
        "minilab-m-f16.json",
        r#"[{"test": "pp512", "avg_ts": 60.0, "stddev_ts": 1.0, "weight_bytes": 6430000000},
            {"test": "tg128", "avg_ts": 6.0, "stddev_ts": 0.0}]"#,
    );
    write("minilab-m-int8.json", "[{\"test\": \"pp512\"}]");
    write("llama-bench-m-Q8_0.json", "[]");
    write("llama-bench-m-Q4_0.json", r#"[{"n_prompt": 0, "n_gen": 128, "avg_ts": 8.0, "model_size": 1910000000}]"#);
    // the head in int8: paired with Q4_0 too, its bytes beside Q4_0's
    write(
        "minilab-m-nf4-head8.json",
        r#"[{"test": "tg128", "avg_ts": 10.0, "stddev_ts": 0.5, "weight_bytes": 1980000000}]"#,
    );
    let out = side_by_side(dir.path());
    assert!(out.contains("| f16 | F16 | 6.43 / 6.43 | pp512 | 60.0 ± 1.0 | 40.0 (10.0–40.0) | 1.50 |"), "{out}");
    // no samples: the mean stands alone (the bytes are the first record's)
    assert!(out.contains("| f16 | F16 | 6.43 / 6.43 | tg128 | 6.0 ± 0.0 | 5.0 (5.0–5.0) | 1.20 |"), "{out}");
    assert!(out.contains("| int8 | Q8_0 | | malformed:"), "{out}");
    assert!(out.contains("| nf4 | Q4_0 | | missing or unreadable:"), "{out}");
    assert!(out.contains("| nf4-head8 | Q4_0 | 1.98 / 1.91 | tg128 | 10.0 ± 0.5 | 8.0 (8.0–8.0) | 1.25 |"), "{out}");
    // an absent head8 file (calls before session 28 ran none) gives no row
    assert!(!out.contains("int8-head8"), "{out}");
}

/// flash.cu's fragments, masks, online softmax and layouts, emulated line for line, match causal
/// attention on every shape the script holds, in the default and the split-KV entries (it exits 1 past 1e-9, and on NaN: a read past the
/// filled positions).
#[test]
fn flash_attention_index_arithmetic_matches_attention() {
    let out = Command::new("python3")
        .arg("bench/kernels/flash_sim.py")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // five shapes, each by the default entry and by the split-KV one
    assert_eq!(stdout.lines().filter(|l| l.contains("max |Δ|")).count(), 10, "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.contains("split-KV: max |Δ|")).count(), 5, "{stdout}");
    assert_eq!(stdout.lines().last(), Some("ok"), "{stdout}");
}

/// `unxz SRC DEST` of bench/unxz.sh in a bash at `dir`: its exit code and stderr.
fn unxz(dir: &std::path::Path, src: &str, dest: &str) -> (bool, String) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/unxz.sh");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source '{}' && unxz {src} {dest}", script.display()))
        .current_dir(dir)
        .output()
        .expect("bash runs");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn unxz_leaves_no_executable_behind_when_the_archive_is_missing_or_broken() {
    let dir = tempfile::tempdir().unwrap();
    let xz = Command::new("python3")
        .args(["-c", "import lzma,sys; open('good.xz','wb').write(lzma.compress(b'#!/bin/sh\\necho unpacked\\n'))"])
        .current_dir(dir.path())
        .status()
        .expect("python3 runs");
    assert!(xz.success());
    std::fs::write(dir.path().join("broken.xz"), b"not xz at all").unwrap();

    // an empty executable would run and exit 0, as if the checks it stands for had passed
    for src in ["missing.xz", "broken.xz"] {
        let (ok, err) = unxz(dir.path(), src, "bin");
        assert!(!ok, "{src}: unxz succeeded");
        assert!(err.contains(&format!("unxz: {src} did not unpack")), "{src}: {err}");
        assert!(!dir.path().join("bin").exists() && !dir.path().join("bin.part").exists(), "{src}: a file was left");
    }

    let (ok, err) = unxz(dir.path(), "good.xz", "bin");
    assert!(ok, "{err}");
    let run = Command::new(dir.path().join("bin")).output().expect("the unpacked file runs");
    assert_eq!(String::from_utf8_lossy(&run.stdout), "unpacked\n");
    // once there, it is kept: a second call does not read the archive again
    std::fs::remove_file(dir.path().join("good.xz")).unwrap();
    assert!(unxz(dir.path(), "good.xz", "bin").0);
}
