//! With the `cuda` feature, compiles the CUDA kernels (src/kernels/cuda/*.cu) to PTX with nvcc and
//! the PTX to SASS with ptxas (both embedded); the CPU build needs nothing. With `cutlass` too,
//! compiles the CUTLASS prefill GEMMs (src/kernels/cuda/cutlass/): their kernels to PTX and SASS for
//! sm_90a, and their host half into a static library whose CUDA references point at its own
//! forwarders (see cutlass/driver.cpp).
use std::{env, path::PathBuf, process::Command};

fn main() {
    println!("cargo:rerun-if-changed=src/kernels/cuda/linear.cu");
    println!("cargo:rerun-if-changed=src/kernels/cuda/attention.cu");
    println!("cargo:rerun-if-changed=src/kernels/cuda/decode.cu");
    println!("cargo:rerun-if-changed=src/kernels/cuda/flash.cu");
    println!("cargo:rerun-if-changed=src/kernels/cuda/common.cuh");
    for header in [
        "gemv.cuh",
        "gemv_accumulate.cuh",
        "gemv_mixed.cuh",
        "gemv_prefetch.cuh",
        "gemv_staged.cuh",
        "gemv_stream.cuh",
        "qgemm.cuh",
    ] {
        println!("cargo:rerun-if-changed=src/kernels/cuda/{header}");
    }
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let arch = compute_cap();
    // the kernels' architecture, for launches that need one (flash.cu's mma.sync needs sm_80)
    println!("cargo:rustc-env=MINILAB_CUDA_ARCH={arch}");
    if env::var_os("CARGO_FEATURE_CUTLASS").is_some() {
        cutlass();
    }
    for name in ["linear", "attention", "decode", "flash"] {
        let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join(format!("{name}.ptx"));
        let src = format!("src/kernels/cuda/{name}.cu");
        let status = Command::new(env::var("NVCC").unwrap_or_else(|_| "nvcc".into()))
            .args(["--ptx", "-O3", &format!("-arch=sm_{arch}"), &src, "-o"])
            .arg(&out)
            .status()
            .unwrap_or_else(|e| panic!("cannot run nvcc ({e}): put it on PATH or set NVCC"));
        assert!(status.success(), "nvcc failed on {src}");
        sass(&out, &format!("sm_{arch}"));
    }
}

/// The SASS of `ptx` for `arch` beside it (`.cubin`), by ptxas (next to nvcc, or on PATH): what
/// minilab loads, so that the driver does not compile the PTX on each new machine (launch.rs).
fn sass(ptx: &std::path::Path, arch: &str) {
    let nvcc = PathBuf::from(env::var("NVCC").unwrap_or_else(|_| "nvcc".into()));
    let ptxas = match nvcc.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir.join("ptxas"),
        None => PathBuf::from("ptxas"),
    };
    run(Command::new(ptxas)
        .args(["-O3", &format!("-arch={arch}")])
        .arg(ptx)
        .arg("-o")
        .arg(ptx.with_extension("cubin")));
}

/// The CUDA references of params.cu's object, renamed to driver.cpp's forwarders.
const RENAMED: [&str; 7] = [
    "cuTensorMapEncodeTiled",
    "cudaGetDevice",
    "cudaDeviceGetAttribute",
    "__cudaRegisterFatBinary",
    "__cudaRegisterFatBinaryEnd",
    "__cudaUnregisterFatBinary",
    "__cudaRegisterVar",
];

/// The `cutlass` feature's GEMMs: kernels.cu to PTX, params.cu and driver.cpp into
/// libminilab_cutlass.a. CUTLASS's headers come from `CUTLASS_DIR` (the folder holding `include/`
/// and `tools/util/include/`).
fn cutlass() {
    for file in ["mixed.cuh", "nf4_convert.cuh", "gemms.cuh", "kernels.cu", "params.cu", "driver.cpp"] {
        println!("cargo:rerun-if-changed=src/kernels/cuda/cutlass/{file}");
    }
    println!("cargo:rerun-if-env-changed=CUTLASS_DIR");
    let root = env::var("CUTLASS_DIR").unwrap_or_else(|_| {
        panic!(
            "the cutlass feature needs CUTLASS_DIR, the folder of CUTLASS 4.2's include/ and tools/util/include/ \
             (bash bench/kernels/fetch-cutlass.sh fetches it from PyPI and prints it)"
        )
    });
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let nvcc = env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    let flags = [
        "-O3".to_string(),
        "-DNDEBUG".into(),
        "-std=c++17".into(),
        "-arch=sm_90a".into(),
        "--expt-relaxed-constexpr".into(),
        format!("-I{root}/include"),
        format!("-I{root}/tools/util/include"),
    ];
    let dir = "src/kernels/cuda/cutlass";
    run(Command::new(&nvcc)
        .arg("--ptx")
        .args(&flags)
        .arg(format!("{dir}/kernels.cu"))
        .arg("-o")
        .arg(out.join("cutlass.ptx")));
    sass(&out.join("cutlass.ptx"), "sm_90a");
    let params = out.join("cutlass_params.o");
    run(Command::new(&nvcc)
        .args(["-c", "-Xcompiler", "-fPIC", "-DCUTLASS_ENABLE_DIRECT_CUDA_DRIVER_CALL=1"])
        .args(&flags)
        .arg(format!("{dir}/params.cu"))
        .arg("-o")
        .arg(&params));
    let mut objcopy = Command::new("objcopy");
    for name in RENAMED {
        objcopy.arg(format!("--redefine-sym={name}=minilab_{name}"));
    }
    run(objcopy.arg(&params));
    let driver = out.join("cutlass_driver.o");
    run(Command::new("g++").args(["-c", "-O2", "-fPIC", &format!("{dir}/driver.cpp"), "-o"]).arg(&driver));
    let lib = out.join("libminilab_cutlass.a");
    let _ = std::fs::remove_file(&lib);
    run(Command::new("ar").arg("crs").arg(&lib).arg(&params).arg(&driver));
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=minilab_cutlass");
    println!("cargo:rustc-link-lib=dylib=stdc++");
}

/// Runs a build step, panicking with the command if it fails.
fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run {cmd:?} ({e})"));
    assert!(status.success(), "build step failed: {cmd:?}");
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
