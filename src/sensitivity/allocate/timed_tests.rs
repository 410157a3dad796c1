use super::super::{AllocError, Choice, LayerOptions};
use super::*;
use crate::quant::Precision;

/// Layers with (bytes, score, µs) for f16, int8 and nf4.
fn instance(rows: &[[(u64, f64, f64); 3]]) -> (Vec<LayerOptions>, Vec<Vec<f64>>) {
    let ps = [Precision::F16, Precision::Int8, Precision::Nf4];
    let layers = rows
        .iter()
        .enumerate()
        .map(|(i, r)| LayerOptions {
            id: format!("blk.{i}.attn_q"),
            choices: r
                .iter()
                .zip(ps)
                .map(|(&(bytes, score, _), precision)| Choice { precision, bytes, score })
                .collect(),
        })
        .collect();
    let times = rows.iter().map(|r| r.iter().map(|c| c.2).collect()).collect();
    (layers, times)
}

/// Every plan of a small instance, for a brute-force check.
fn all_plans(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for _ in 0..n {
        out = out.into_iter().flat_map(|p| (0..k).map(move |j| [p.clone(), vec![j]].concat())).collect();
    }
    out
}

fn seeded(seed: u64, n: usize) -> Vec<[(u64, f64, f64); 3]> {
    let mut x = seed;
    let mut r = || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 33) as f64 / (1u64 << 31) as f64
    };
    (0..n)
        .map(|_| {
            let b = 100 + (r() * 900.0) as u64;
            // GPU-like: smaller is faster; some layers CPU-like: nf4 slower than f16
            let t16 = 10.0 + 40.0 * r();
            let slow_nf4 = r() < 0.3;
            [
                (b, 0.0, t16),
                (b / 2, r() * 0.1, t16 * (0.5 + 0.2 * r())),
                (b / 4, r() * 0.5, if slow_nf4 { t16 * 1.3 } else { t16 * 0.3 }),
            ]
        })
        .collect()
}

#[test]
fn both_strategies_meet_both_limits_and_optimal_is_the_brute_force_optimum() {
    for seed in 0..40 {
        let rows = seeded(seed, 6);
        let (layers, times) = instance(&rows);
        let fixed_us = 5.0;
        let bytes = |c: &[usize]| super::super::plan_bytes(&layers, 0, c);
        let plans = all_plans(6, 3);
        let total_16: u64 = rows.iter().map(|r| r[0].0).sum();
        let budget = total_16 / 2;
        let all_us: Vec<f64> = plans.iter().map(|p| plan_us(&times, fixed_us, p)).collect();
        let mid_us =
            (all_us.iter().copied().fold(f64::INFINITY, f64::min) + all_us.iter().copied().fold(0.0, f64::max)) / 2.0;
        let limit = TimeLimit { fixed_us, max_us: mid_us };
        let best = plans
            .iter()
            .filter(|p| bytes(p) <= budget && plan_us(&times, fixed_us, p) <= limit.max_us)
            .map(|p| super::super::predicted_score(&layers, p))
            .fold(f64::INFINITY, f64::min);
        let feasible_us: Vec<f64> = plans
            .iter()
            .filter(|p| bytes(p) <= budget && plan_us(&times, fixed_us, p) <= limit.max_us)
            .map(|p| plan_us(&times, fixed_us, p))
            .collect();
        let o = optimal(&layers, &times, 0, budget, limit);
        if let Err(e) = &o {
            // Only rounding (time in 1/256 of the slack, 6 layers) may hide a feasible plan.
            let slack = limit.max_us - all_us.iter().copied().fold(f64::INFINITY, f64::min);
            assert!(feasible_us.iter().all(|&t| t > limit.max_us - 0.03 * slack), "seed {seed}: {e}");
            continue;
        }
        let o = o.unwrap();
        for a in std::iter::once(&o).chain(greedy(&layers, &times, 0, budget, limit).as_ref().ok()) {
            assert!(a.bytes <= budget, "seed {seed}: over the budget");
            assert!(plan_us(&times, fixed_us, &a.choice) <= limit.max_us + 1e-9, "seed {seed}: too slow");
            assert!(a.predicted >= best - 1e-12, "seed {seed}: better than the optimum?");
        }
        if let Ok(g) = greedy(&layers, &times, 0, budget, limit) {
            assert!(o.predicted <= g.predicted + 1e-12, "seed {seed}: optimal worse than greedy");
        }
        assert!(o.predicted <= best + 0.05, "seed {seed}: optimal {} far from the optimum {best}", o.predicted);
    }
}

#[test]
fn a_time_limit_can_force_a_larger_plan_when_nf4_is_slow() {
    // CPU-like: nf4 is the smallest but the slowest; a tight time limit needs f16 somewhere.
    let (layers, times) = instance(&[[(100, 0.0, 10.0), (50, 0.1, 12.0), (25, 0.2, 20.0)]; 4]);
    let limit = TimeLimit { fixed_us: 0.0, max_us: 60.0 };
    let a = greedy(&layers, &times, 0, 400, limit).unwrap();
    assert!(plan_us(&times, 0.0, &a.choice) <= 60.0);
    assert!(a.choice.iter().any(|&c| c != 2), "all-nf4 takes 80 µs");
}

#[test]
fn an_infeasible_pair_names_the_tightest_feasible_values() {
    let (layers, times) = instance(&[[(100, 0.0, 10.0), (50, 0.1, 6.0), (25, 0.2, 3.0)]; 4]);
    // 4 × nf4 = 12 µs at 100 bytes; 4 × f16 = 40 µs. Ask for 10 µs: no plan is that fast.
    let e = greedy(&layers, &times, 0, 400, TimeLimit { fixed_us: 0.0, max_us: 10.0 }).unwrap_err();
    let AllocError::TooSlow { fastest_us, smallest_bytes, .. } = e.clone() else { panic!("{e:?}") };
    assert!((fastest_us - 12.0).abs() < 1e-9, "{fastest_us}");
    assert_eq!(smallest_bytes, None);
    assert!(e.to_string().contains("no plan of these formats is that fast"), "{e}");
    // Slow formats: nf4 20 µs, f16 10 µs each; 50 µs needs at least three f16 layers' worth of speed.
    let (layers, times) = instance(&[[(100, 0.0, 10.0), (50, 0.1, 15.0), (25, 0.2, 20.0)]; 4]);
    let e = greedy(&layers, &times, 0, 150, TimeLimit { fixed_us: 0.0, max_us: 50.0 }).unwrap_err();
    let AllocError::TooSlow { fastest_us, smallest_bytes, .. } = e.clone() else { panic!("{e:?}") };
    // Within 150 bytes the best is two int8 and two nf4 (70 µs); 50 µs needs 300 bytes.
    assert!((fastest_us - 70.0).abs() < 1e-9, "{fastest_us}");
    assert_eq!(smallest_bytes, Some(300));
    assert!(e.to_string().contains("meeting that speed needs at least"), "{e}");
}

#[test]
fn bad_times_are_refused() {
    let (layers, mut times) = instance(&[[(100, 0.0, 10.0), (50, 0.1, 6.0), (25, 0.2, 3.0)]; 2]);
    times[1][2] = f64::NAN;
    let limit = TimeLimit { fixed_us: 0.0, max_us: 100.0 };
    assert_eq!(greedy(&layers, &times, 0, 400, limit), Err(AllocError::BadTimes));
    times.pop();
    assert_eq!(optimal(&layers, &times, 0, 400, limit), Err(AllocError::BadTimes));
}
