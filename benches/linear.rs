//! One linear layer per format at decode (1 row) and prefill (512 rows) shapes, CPU, f32
//! activations: the fused kernels against the plain path (dequantize, then matmul) they replace.
//! `cargo bench --bench linear`

use candle_core::{DType, Device, Module, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use minilab::quant::{Precision, SwitchableLinear};

fn bench_linear(c: &mut Criterion) {
    let dev = Device::Cpu;
    // SmolLM2's FFN up projection and a Llama-3.2-3B attention projection; 16-bit masters.
    for (out_f, in_f) in [(1536, 576), (3072, 3072)] {
        let w = Tensor::randn(0f32, 0.02, (out_f, in_f), &dev).unwrap().to_dtype(DType::F16).unwrap();
        let mut layer = SwitchableLinear::new(w, None, &dev, DType::F32).unwrap();
        let mut group = c.benchmark_group(format!("linear_{out_f}x{in_f}"));
        group.sample_size(10);
        for p in [Precision::F16, Precision::Int8, Precision::Nf4] {
            layer.set_precision(p).unwrap();
            for rows in [1usize, 512] {
                let xs = Tensor::randn(0f32, 1.0, (1, rows, in_f), &dev).unwrap();
                for (path, fused) in [("plain", false), ("fused", true)] {
                    minilab::kernels::set_enabled(fused);
                    group.bench_with_input(BenchmarkId::new(format!("{}-{path}", p.name()), rows), &xs, |b, xs| {
                        b.iter(|| layer.forward(xs).unwrap())
                    });
                }
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench_linear);
criterion_main!(benches);
