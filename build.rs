//! With the `cuda` feature, compiles the CUDA kernels (src/kernels/cuda/*.cu) to PTX with nvcc; the
//! CPU build needs nothing.
use std::{env, path::PathBuf, process::Command};

fn main() {
    println!("cargo:rerun-if-changed=src/kernels/cuda/linear.cu");
    println!("cargo:rerun-if-changed=src/kernels/cuda/attention.cu");
    println!("cargo:rerun-if-changed=src/kernels/cuda/common.cuh");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let arch = env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    for name in ["linear", "attention"] {
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
