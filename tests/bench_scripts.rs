//! The bench scripts that run here, without a GPU: `bench/kernels/sass_table.py` on a small SASS
//! fixture (tests/fixtures/sass). They need python3, as the README's test command's machine has.

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
