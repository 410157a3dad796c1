//! The arguments a GEMV launch takes by value (gemv_accumulate.cuh's `Part`, `Rope` and `Parts`),
//! and what a launch writes besides its products ([`Epilogue`]) or applies before them ([`NormArg`]).

use candle_core::cuda_backend::cudarc::driver::DeviceRepr;

/// `gemv::Part` of gemv_accumulate.cuh.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct PartArg {
    pub a: u64,
    pub b: u64,
    pub ys: u64,
    pub n: i32,
    /// 0 dense, 1 int8, 2 NF4 (gemv_accumulate.cuh's `Format`).
    pub format: i32,
}

/// `gemv::Parts` of gemv_accumulate.cuh, passed by value.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct PartsArg {
    pub p: [PartArg; 3],
    pub count: i32,
    pub m: i32,
    pub k: i32,
    pub mode: i32,
    pub rope: RopeArg,
    pub norm_w: u64,
    pub res: u64,
    pub eps: f32,
    pub norm: i32,
    pub xw: u64,
    pub partial: u64,
    pub partials: i32,
    pub pad: i32,
}

// gemv_accumulate.cuh asserts the same sizes for Part, Rope and Parts.
const _: () = assert!(
    std::mem::size_of::<PartArg>() == 32
        && std::mem::size_of::<RopeArg>() == 56
        && std::mem::size_of::<PartsArg>() == 216
);

// SAFETY: plain old data laid out as the C structs the kernels take.
unsafe impl DeviceRepr for PartsArg {}

/// `gemv::Rope` of gemv_accumulate.cuh: device addresses of the RoPE tables `[max_pos, d/2]`, the position
/// (u32) and the caches `[m, kv_heads, cap, d]`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct RopeArg {
    pub cos: u64,
    pub sin: u64,
    pub pos: u64,
    pub k_cache: u64,
    pub v_cache: u64,
    pub d: i32,
    pub cap: i32,
    pub max_pos: i32,
    pub pad: i32,
}

/// Where a residual launch before a norm writes that norm's statistics (the stats way, gemv_ns_
/// kernels): device addresses of `res` `[n]`, the norm's weight `[n]` and `xw` `[n]` (all in xs'
/// dtype), and of `partial`, f32 for each of the launch's blocks ([`super::stats_blocks`]).
#[derive(Clone, Copy, Default)]
pub(crate) struct StatsOut {
    pub res: u64,
    pub w: u64,
    pub xw: u64,
    pub partial: u64,
}

/// What a GEMV launch writes (gemv_accumulate.cuh's `Parts::mode`).
#[derive(Clone, Copy)]
pub(crate) enum Epilogue {
    /// Each part's `[m, n_i]`, part after part.
    Plain,
    /// silu(gate)·up `[m, n]` of two parts (gate, up) of one shape.
    SiluMul,
    /// q `[m, heads·d]` rotated at the position, k rotated and v written into the caches there
    /// (q, k, v parts; `d` divides their rows).
    Rope(RopeArg),
    /// `res + xs·Wᵀ` `[m, n]` of one part, for the device address of `res` `[m, n]` in xs' dtype.
    Residual(u64),
    /// [`Self::Residual`] that also writes the next norm's statistics (one row).
    ResidualStats(StatsOut),
}

impl Epilogue {
    pub(super) fn mode(&self) -> i32 {
        match self {
            Self::Plain => 0,
            Self::SiluMul => 1,
            Self::Rope(_) => 2,
            Self::Residual(_) | Self::ResidualStats(_) => 3,
        }
    }

    /// Whether the launch writes one part's rows, each its own (Plain and the residual ones).
    pub(super) fn by_rows(&self) -> bool {
        matches!(self, Self::Plain | Self::Residual(_) | Self::ResidualStats(_))
    }
}

/// How a launch applies a norm before its products ([`NormArg`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum NormWay {
    /// Each block normalizes xs into shared memory first (Parts' norm = 1).
    Shared,
    /// The gemv_ln_ kernels' warps normalize as they load xs (norm = 2), where the launch takes one.
    Late,
    /// xs is xw, from the residual launch before it, whose `count` blocks left their sums of
    /// squares at the device address `partial` (norm = 3, the gemv_ns_ kernels).
    Stats { partial: u64, count: i32 },
}

/// RMSNorm before the product (gemv_accumulate.cuh's `Parts::norm`): xs is the residual stream,
/// normalized with `eps` and scaled by the weight at device address `w` (`[k]`, xs' dtype) first
/// (for [`NormWay::Stats`], xs is already scaled and `w` unused). One row of xs, and `k` elements
/// must fit the block's shared memory ([`super::norm_fits`]).
#[derive(Clone, Copy)]
pub(crate) struct NormArg {
    pub w: u64,
    pub eps: f32,
    pub way: NormWay,
}

/// The launch's fixed arguments; the parts' pointers are filled in by the caller. Parts' norm is
/// 1 here where a norm is given; the kernel's way sets 2 or 3 ([`super::kernel_way`]).
pub(super) fn parts_header(count: usize, m: usize, k: usize, epi: Epilogue, norm: Option<NormArg>) -> PartsArg {
    let mut arg = PartsArg {
        count: count as i32,
        m: m as i32,
        k: k as i32,
        mode: epi.mode(),
        rope: if let Epilogue::Rope(r) = epi { r } else { RopeArg::default() },
        norm_w: norm.map_or(0, |n| n.w),
        res: if let Epilogue::Residual(r) = epi { r } else { 0 },
        eps: norm.map_or(0.0, |n| n.eps),
        norm: i32::from(norm.is_some()),
        ..Default::default()
    };
    if let Epilogue::ResidualStats(s) = epi {
        (arg.res, arg.norm_w, arg.xw, arg.partial) = (s.res, s.w, s.xw, s.partial);
    }
    if let Some(NormArg { way: NormWay::Stats { partial, count }, .. }) = norm {
        (arg.partial, arg.partials) = (partial, count);
    }
    arg
}
