//! With the `cuda` feature, compiles the fused linear kernels (src/kernels/cuda/linear.cu) to PTX
//! with nvcc; the CPU build needs nothing.
use std::{env, path::PathBuf, process::Command};

fn main() {
    println!("cargo:rerun-if-changed=src/kernels/cuda/linear.cu");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("linear.ptx");
    let arch = env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let status = Command::new(env::var("NVCC").unwrap_or_else(|_| "nvcc".into()))
        .args(["--ptx", "-O3", &format!("-arch=sm_{arch}"), "src/kernels/cuda/linear.cu", "-o"])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("cannot run nvcc ({e}): put it on PATH or set NVCC"));
    assert!(status.success(), "nvcc failed on src/kernels/cuda/linear.cu");
}
