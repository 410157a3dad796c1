//! The `MINILAB_*` environment variables and the values each takes.
//!
//! The code that reads one keeps its default on any other value, deep inside a kernel or a
//! download where no error can reach the user. So the binary checks them all before it starts
//! ([`check`]): a mistyped value is one error line (exit 2), not a comparison that silently
//! compares nothing. An empty value counts as unset.

use crate::error::{Error, Result};
use std::ffi::OsString;

/// What a variable takes.
#[derive(Debug, Clone, Copy)]
enum Takes {
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// A finite number of seconds above 0.
    Seconds,
    /// A whole number from 1 to 65536 (megabytes).
    Megabytes,
    /// Anything (a path).
    Any,
}

/// One variable the library reads, as the README documents it.
#[derive(Debug)]
pub struct Var {
    pub name: &'static str,
    takes: Takes,
    /// Whether it changes which kernels run, so a measurement must name it ([`in_effect`]).
    pub kernel: bool,
}

const fn knob(name: &'static str, takes: Takes) -> Var {
    Var { name, takes, kernel: true }
}

const fn other(name: &'static str, takes: Takes) -> Var {
    Var { name, takes, kernel: false }
}

const ON_OFF: &[&str] = &["0", "1"];

/// Every variable minilab reads.
pub const VARS: &[Var] = &[
    knob("MINILAB_KERNELS", Takes::OneOf(&["plain", "fused"])),
    knob("MINILAB_CUDA_GRAPH", Takes::OneOf(&["off", "0", "on", "1"])),
    knob("MINILAB_ATTENTION", Takes::OneOf(&["simple", "single", "split"])),
    knob("MINILAB_METRICS", Takes::OneOf(&["host", "device"])),
    knob("MINILAB_ISA", Takes::OneOf(&["avx512", "avx2", "portable"])),
    knob("MINILAB_PDL", Takes::OneOf(ON_OFF)),
    knob("MINILAB_FUSE_ROPE", Takes::OneOf(ON_OFF)),
    knob("MINILAB_FUSE_MIXED", Takes::OneOf(ON_OFF)),
    knob("MINILAB_FUSE_NORM", Takes::OneOf(&["auto", "0", "1", "late", "stats"])),
    knob("MINILAB_FUSE_PREFILL", Takes::OneOf(ON_OFF)),
    knob("MINILAB_WIDE_OPS", Takes::OneOf(ON_OFF)),
    knob("MINILAB_SOFTMAX_REGS", Takes::OneOf(ON_OFF)),
    knob("MINILAB_FLASH", Takes::OneOf(ON_OFF)),
    knob("MINILAB_FLASH_B3", Takes::OneOf(ON_OFF)),
    knob("MINILAB_FLASH_SPLIT", Takes::OneOf(ON_OFF)),
    knob("MINILAB_PREFETCH", Takes::OneOf(crate::kernels::prefetch::WORDS)),
    knob("MINILAB_GEMV_STAGED", Takes::OneOf(ON_OFF)),
    knob("MINILAB_GEMV_GRID", Takes::OneOf(crate::kernels::grid::WORDS)),
    knob("MINILAB_PREFILL_CHUNK_MB", Takes::Megabytes),
    knob("MINILAB_QGEMM", Takes::OneOf(crate::kernels::qgemm::WORDS)),
    knob("MINILAB_STACK_QKV", Takes::OneOf(crate::quant::stacked::WORDS)),
    other("MINILAB_HUB_TIMEOUT_S", Takes::Seconds),
    // where the plot tests keep their SVGs (the binary ignores it)
    other("MINILAB_KEEP_PLOTS", Takes::Any),
];

/// Checks every `MINILAB_*` variable of this process: an error (bad input) for a value its
/// variable does not take, a warning for a name minilab does not read.
pub fn check() -> Result<()> {
    for name in check_vars(std::env::vars_os())? {
        tracing::warn!("{name} is set, but minilab reads no such variable (it reads {})", names());
    }
    Ok(())
}

/// The kernel settings of this process that differ from the defaults, as `NAME=value` in
/// [`VARS`]' order: what a benchmark must record beside its figures.
pub fn in_effect() -> Vec<String> {
    in_effect_of(|name| std::env::var(name).ok())
}

fn in_effect_of(get: impl Fn(&str) -> Option<String>) -> Vec<String> {
    VARS.iter()
        .filter(|v| v.kernel)
        .filter_map(|v| get(v.name).filter(|value| !value.is_empty()).map(|value| format!("{}={value}", v.name)))
        .collect()
}

/// [`check`] over `vars`; returns the unknown `MINILAB_*` names.
fn check_vars(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Result<Vec<String>> {
    let mut unknown = Vec::new();
    let mut set: Vec<(&str, String)> = Vec::new();
    for (name, value) in vars {
        let Some(name) = name.to_str().filter(|n| n.starts_with("MINILAB_")) else { continue };
        let Some(var) = VARS.iter().find(|v| v.name == name) else {
            unknown.push(name.to_string());
            continue;
        };
        let Some(value) = value.to_str() else {
            return Err(Error::input(format!("{name} is not valid UTF-8")));
        };
        if !value.is_empty() && !var.takes.accepts(value) {
            let shown: String = value.chars().take(40).collect();
            return Err(Error::input(format!("{name}={shown:?} is not {}", var.takes.describe())));
        }
        set.push((var.name, value.to_string()));
    }
    check_alternatives(&set)?;
    Ok(unknown)
}

/// Settings that pick different kernels for the same launch: a one-row GEMV either stages its
/// weights, asks L2 for the next launch's or streams them across row groups, and no kernel does two;
/// a prompt's quantized weight is either dequantized in row chunks or multiplied by the GEMM that
/// dequantizes in shared memory.
fn check_alternatives(set: &[(&str, String)]) -> Result<()> {
    let value = |name: &str| set.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
    let asked: Vec<String> = [
        (value("MINILAB_GEMV_STAGED") == Some("1")).then(|| "MINILAB_GEMV_STAGED=1".to_string()),
        value("MINILAB_PREFETCH").filter(|w| matches!(*w, "line" | "bulk")).map(|w| format!("MINILAB_PREFETCH={w}")),
        value("MINILAB_GEMV_GRID").filter(|g| g.starts_with("stream")).map(|g| format!("MINILAB_GEMV_GRID={g}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if asked.len() > 1 {
        return Err(Error::input(format!("{} are alternatives for the decode GEMVs: set one", asked.join(" and "))));
    }
    if let (Some(chunk), Some(way)) =
        (value("MINILAB_PREFILL_CHUNK_MB"), value("MINILAB_QGEMM").filter(|w| !matches!(*w, "off" | "auto")))
    {
        return Err(Error::input(format!(
            "MINILAB_PREFILL_CHUNK_MB={chunk} and MINILAB_QGEMM={way} are alternatives for the prefill of int8 and NF4 weights: set one"
        )));
    }
    Ok(())
}

impl Takes {
    fn accepts(self, value: &str) -> bool {
        match self {
            Takes::OneOf(words) => words.contains(&value),
            Takes::Seconds => value.trim().parse::<f64>().is_ok_and(|s| s.is_finite() && s > 0.0),
            Takes::Megabytes => value.trim().parse::<u32>().is_ok_and(|mb| (1..=65536).contains(&mb)),
            Takes::Any => true,
        }
    }

    fn describe(self) -> String {
        match self {
            Takes::OneOf(words) => format!("one of {}", words.join(", ")),
            Takes::Seconds => "a number of seconds above 0".into(),
            Takes::Megabytes => "a whole number of megabytes from 1 to 65536".into(),
            Takes::Any => "anything".into(),
        }
    }
}

fn names() -> String {
    VARS.iter().map(|v| v.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
    }

    #[test]
    fn every_value_the_readers_act_on_is_accepted() {
        let ok = [
            ("MINILAB_KERNELS", "plain"),
            ("MINILAB_CUDA_GRAPH", "off"),
            ("MINILAB_ATTENTION", "split"),
            ("MINILAB_METRICS", "host"),
            ("MINILAB_ISA", "portable"),
            ("MINILAB_PDL", "1"),
            ("MINILAB_FUSE_ROPE", "0"),
            ("MINILAB_FUSE_MIXED", "0"),
            ("MINILAB_FUSE_NORM", ""),
            ("MINILAB_FUSE_NORM", "late"),
            ("MINILAB_FUSE_NORM", "stats"),
            ("MINILAB_FUSE_NORM", "auto"),
            ("MINILAB_FUSE_NORM", "0"),
            ("MINILAB_FUSE_PREFILL", "0"),
            ("MINILAB_WIDE_OPS", "0"),
            ("MINILAB_SOFTMAX_REGS", "1"),
            ("MINILAB_FLASH", "0"),
            ("MINILAB_FLASH_B3", "1"),
            ("MINILAB_FLASH_SPLIT", "0"),
            ("MINILAB_HUB_TIMEOUT_S", "2.5"),
            ("MINILAB_KEEP_PLOTS", "/tmp/plots"),
            ("MINILAB_PREFILL_CHUNK_MB", "16"),
            ("MINILAB_GEMV_STAGED", "1"),
            ("MINILAB_PREFETCH", "off"),
            ("MINILAB_GEMV_GRID", "resident"),
            ("MINILAB_QGEMM", "off"),
            ("MINILAB_STACK_QKV", "1"),
            ("MINILAB_STACK_QKV", "auto"),
            ("PATH", "/bin"),
            ("HF_HUB_OFFLINE", "anything"),
        ];
        assert_eq!(check_vars(vars(&ok)).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_value_its_variable_does_not_take_is_bad_input() {
        for (name, value) in [
            ("MINILAB_ATTENTION", "Split"),
            ("MINILAB_FUSE_NORM", "true"),
            ("MINILAB_FUSE_PREFILL", "off"),
            ("MINILAB_PDL", "yes"),
            ("MINILAB_FUSE_MIXED", "off"),
            ("MINILAB_KERNELS", "off"),
            ("MINILAB_HUB_TIMEOUT_S", "0"),
            ("MINILAB_HUB_TIMEOUT_S", "-1"),
            ("MINILAB_HUB_TIMEOUT_S", "nan"),
            ("MINILAB_HUB_TIMEOUT_S", "inf"),
            ("MINILAB_HUB_TIMEOUT_S", "soon"),
            ("MINILAB_PREFILL_CHUNK_MB", "0"),
            ("MINILAB_PREFILL_CHUNK_MB", "1.5"),
            ("MINILAB_PREFILL_CHUNK_MB", "100000"),
            ("MINILAB_GEMV_GRID", "Resident"),
            ("MINILAB_GEMV_GRID", "1"),
            ("MINILAB_GEMV_GRID", "streamed"),
            ("MINILAB_GEMV_GRID", "stream_regs"),
            ("MINILAB_QGEMM", "1"),
            ("MINILAB_QGEMM", "96"),
            ("MINILAB_QGEMM", "ON"),
        ] {
            let err = check_vars(vars(&[(name, value)])).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{name}={value}");
            let msg = err.to_string();
            assert!(msg.contains(name) && msg.contains(value), "{msg}");
        }
    }

    #[test]
    fn two_alternative_gemv_kernels_together_are_bad_input() {
        let staged = ("MINILAB_GEMV_STAGED", "1");
        let stream = ("MINILAB_GEMV_GRID", "stream");
        for way in ["line", "bulk"] {
            let prefetch = ("MINILAB_PREFETCH", way);
            for pair in [[prefetch, staged], [prefetch, stream]] {
                let err = check_vars(vars(&pair)).unwrap_err();
                assert_eq!(err.exit_code(), 2);
                assert!(err.to_string().contains(&format!("MINILAB_PREFETCH={way}")), "{err}");
            }
        }
        let regs = ("MINILAB_GEMV_GRID", "stream-regs");
        assert_eq!(check_vars(vars(&[regs, staged])).unwrap_err().exit_code(), 2);
        assert_eq!(check_vars(vars(&[("MINILAB_PREFETCH", "bulk"), regs])).unwrap_err().exit_code(), 2);
        let err = check_vars(vars(&[staged, stream])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("MINILAB_GEMV_STAGED=1") && msg.contains("MINILAB_GEMV_GRID=stream"), "{msg}");
        // either alone, one of them off, or a resident grid beside one, is fine
        for pair in [
            [("MINILAB_PREFETCH", "bulk"), ("MINILAB_GEMV_STAGED", "0")],
            [("MINILAB_PREFETCH", "off"), staged],
            [("MINILAB_PREFETCH", "off"), stream],
            [("MINILAB_GEMV_STAGED", "0"), stream],
            [("MINILAB_PREFETCH", "off"), ("MINILAB_GEMV_GRID", "stream-regs")],
            [("MINILAB_GEMV_GRID", "resident"), staged],
            [("MINILAB_GEMV_GRID", "resident"), ("MINILAB_PREFETCH", "line")],
        ] {
            assert!(check_vars(vars(&pair)).is_ok(), "{pair:?}");
        }
    }

    #[test]
    fn chunked_dequantizing_beside_the_qgemm_is_bad_input() {
        let chunk = ("MINILAB_PREFILL_CHUNK_MB", "32");
        for way in ["on", "64", "128"] {
            let err = check_vars(vars(&[chunk, ("MINILAB_QGEMM", way)])).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            let msg = err.to_string();
            assert!(
                msg.contains("MINILAB_PREFILL_CHUNK_MB=32") && msg.contains(&format!("MINILAB_QGEMM={way}")),
                "{msg}"
            );
        }
        // the default gives way to the chunks (kernels::op), so naming it beside them is fine
        assert!(check_vars(vars(&[chunk, ("MINILAB_QGEMM", "off")])).is_ok());
        assert!(check_vars(vars(&[chunk, ("MINILAB_QGEMM", "auto")])).is_ok());
        assert!(check_vars(vars(&[("MINILAB_QGEMM", "on")])).is_ok());
    }

    #[test]
    fn the_cutlass_gemm_is_a_word_only_where_it_is_built() {
        let picked = check_vars(vars(&[("MINILAB_QGEMM", "cutlass")]));
        if cfg!(feature = "cutlass") {
            assert!(picked.is_ok());
        } else {
            let err = picked.unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains("MINILAB_QGEMM"), "{err}");
        }
    }

    #[test]
    fn a_hostile_value_is_shown_short_and_on_one_line() {
        let value = format!("split\n{}", "x".repeat(10_000));
        let msg = check_vars(vars(&[("MINILAB_ATTENTION", &value)])).unwrap_err().to_string();
        assert!(!msg.contains('\n') && msg.len() < 200, "{msg}");
    }

    #[cfg(unix)]
    #[test]
    fn a_value_that_is_not_utf8_is_bad_input() {
        use std::os::unix::ffi::OsStringExt;
        let v = vec![(OsString::from("MINILAB_ISA"), OsString::from_vec(vec![0xff, 0xfe]))];
        assert_eq!(check_vars(v).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn in_effect_names_the_kernel_settings_only() {
        let env = [
            ("MINILAB_PREFETCH", "bulk"),
            ("MINILAB_HUB_TIMEOUT_S", "5"),
            ("MINILAB_PDL", ""),
            ("MINILAB_ISA", "avx2"),
        ];
        let got = in_effect_of(|name| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()));
        assert_eq!(got, vec!["MINILAB_ISA=avx2".to_string(), "MINILAB_PREFETCH=bulk".to_string()]);
        assert!(in_effect_of(|_| None).is_empty());
    }

    #[test]
    fn an_unknown_name_is_reported_not_refused() {
        let unknown = check_vars(vars(&[("MINILAB_FUSE_NROM", "1"), ("MINILAB_PDL", "0")])).unwrap();
        assert_eq!(unknown, vec!["MINILAB_FUSE_NROM".to_string()]);
    }
}
