//! With the `cuda` feature, compiles the CUDA kernels (src/kernels/cuda/*.cu) to PTX with nvcc; the
//! CPU build needs nothing.
use std::{env, path::PathBuf, process::Command};

fn main() {
    println!("cargo:rerun-if-changed=src/kernels/cuda/linear.cu");
    println!("cargo:rerun-if-changed=src/kernels/cuda/attention.cu");
    println!("cargo:rerun-if-changed=src/kernels/cuda/decode.cu");
    println!("cargo:rerun-if-changed=src/kernels/cuda/common.cuh");
    for header in
        ["gemv.cuh", "gemv_accumulate.cuh", "gemv_prefetch.cuh", "gemv_staged.cuh", "gemv_stream.cuh", "qgemm.cuh"]
    {
        println!("cargo:rerun-if-changed=src/kernels/cuda/{header}");
    }
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let arch = compute_cap();
    for name in ["linear", "attention", "decode"] {
        let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join(format!("{name}.ptx"));
        let src = format!("src/kernels/cuda/{name}.cu");
        let status = Command::new(env::var("NVCC").unwrap_or_else(|_| "nvcc".into()))
            .args(["--ptx", "-O3", &format!("-arch=sm_{arch}"), &src, "-o"])
            .arg(&out)
            .status()
            .unwrap_or_else(|e| panic!("cannot run nvcc ({e}): put it on PATH or set NVCC"));
        assert!(status.success(), "nvcc failed on {src}");
    }
}

/// `CUDA_COMPUTE_CAP` (e.g. 90), else the first GPU's as nvidia-smi reports it (as candle's build
/// does), else Hopper's 90 with a warning: PTX built for one architecture does not run on older ones.
fn compute_cap() -> String {
    if let Ok(cap) = env::var("CUDA_COMPUTE_CAP") {
        return cap;
    }
    let smi = Command::new("nvidia-smi").args(["--query-gpu=compute_cap", "--format=csv,noheader"]).output();
    if let Some(cap) = smi.ok().and_then(|o| String::from_utf8(o.stdout).ok()).and_then(|s| {
        s.lines()
            .next()
            .map(|l| l.trim().replace('.', ""))
            .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_digit()))
    }) {
        return cap;
    }
    println!("cargo:warning=CUDA_COMPUTE_CAP unset and no nvidia-smi: building the kernels for sm_90 (Hopper)");
    "90".into()
}
