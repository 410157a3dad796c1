//! The decode step as one CUDA graph: captured once for a cache of fixed capacity, replayed for
//! every token. A replay costs one launch where the eager step costs ~9 a block, each paying
//! candle's host overhead; batch-1 decode on a large GPU is bound by exactly that overhead.
//!
//! The step reads its token and position from a device buffer that each replay's upload refills,
//! writes keys and values in place, and leaves its logits in a buffer that the graph owns. Every
//! tensor the step allocates is freed inside the capture, so the graph replays with no allocation
//! left over. The graph holds the addresses of the model's weights and of the cache's buffers: it
//! borrows the model (no precision switch while it lives) and keeps the buffers alive, refusing to
//! step a cache whose buffers were replaced.

use super::{Cache, Model};
use candle_core::{DType, Device, Result, Tensor};

static ENABLED: crate::switch::Switch = crate::switch::Switch::new("MINILAB_CUDA_GRAPH", &["off", "0"]);

/// Turns decode graphs on or off for the process (`MINILAB_CUDA_GRAPH=off` starts them off).
pub fn set_enabled(on: bool) {
    ENABLED.set(on);
}

/// Whether decoding on CUDA captures its step as a graph.
pub fn enabled() -> bool {
    ENABLED.get()
}

/// A graph for `cache` when graphs apply (CUDA, kernels and graphs on), else `None`; a capture
/// that fails is reported once per process and decoding goes on eagerly.
pub fn try_capture<'m>(model: &'m Model, cache: &mut Cache, capacity: usize) -> Option<DecodeGraph<'m>> {
    if !enabled() || !crate::kernels::enabled() || !model.device().is_cuda() {
        return None;
    }
    match DecodeGraph::capture(model, cache, capacity) {
        Ok(g) => Some(g),
        Err(e) => {
            static WARN: std::sync::Once = std::sync::Once::new();
            WARN.call_once(|| tracing::warn!("decoding without a CUDA graph: {e}"));
            None
        }
    }
}

/// A captured decode step for one sequence.
pub struct DecodeGraph<'m> {
    model: &'m Model,
    #[cfg(feature = "cuda")]
    graph: candle_core::cuda_backend::cudarc::driver::CudaGraph,
    /// `[2]` u32: the token, then its position.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    input: Tensor,
    /// `[1, 1, vocab]` f32: the last replay's logits.
    logits: Tensor,
    /// Positions the cache holds; the graph serves positions below it.
    capacity: usize,
    /// The cache's key/value buffers the graph writes, kept alive.
    buffers: Vec<Tensor>,
}

impl std::fmt::Debug for DecodeGraph<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodeGraph").field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

impl<'m> DecodeGraph<'m> {
    /// Grows `cache` to hold `capacity` positions (rounded up as [`Model::reserve_cache`] does) and
    /// captures the step of [`Model::decode_step`] against it. An error (not CUDA, the kernels off, a
    /// capture the driver refuses) leaves the model and cache usable for eager decoding.
    pub fn capture(model: &'m Model, cache: &mut Cache, capacity: usize) -> Result<Self> {
        let Device::Cuda(dev) = model.device() else {
            candle_core::bail!("CUDA graphs need a CUDA device");
        };
        if !crate::kernels::enabled() {
            candle_core::bail!("CUDA graphs need the fused kernels (MINILAB_KERNELS=plain turns them off)");
        }
        let limit = model.decode_limit();
        if capacity > limit {
            candle_core::bail!("a decode graph holds at most {limit} positions, not {capacity}");
        }
        model.reserve_cache(cache, 1, capacity)?;
        let capacity = cache.capacity().min(limit);
        let pos = cache.seq_len();
        if pos >= capacity {
            candle_core::bail!("the cache is full ({pos} of {capacity} positions)");
        }
        let input = Tensor::new(&[0u32, pos as u32], model.device())?;
        let logits = Tensor::zeros((1, 1, model.config().vocab_size), DType::F32, model.device())?;
        #[cfg(feature = "cuda")]
        {
            let graph = capture::record(dev, || step(model, &input, cache, &logits))?;
            Ok(Self { model, graph, input, logits, capacity, buffers: cache.buffers() })
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (dev, step, input, logits, model);
            candle_core::bail!("built without CUDA")
        }
    }

    /// Decodes `token` at the cache's next position: logits `[1, 1, vocab]` (f32), valid until the
    /// next step, which overwrites them.
    pub fn step(&self, token: u32, cache: &mut Cache) -> Result<&Tensor> {
        let pos = cache.seq_len();
        if pos >= self.capacity {
            candle_core::bail!("decode graph: position {pos} is past its capacity of {}", self.capacity);
        }
        let same = |a: &[Tensor], b: &[Tensor]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.id() == y.id());
        if !same(&self.buffers, &cache.buffers()) {
            candle_core::bail!("decode graph: the cache's buffers changed since the capture");
        }
        if token as usize >= self.model.config().vocab_size {
            candle_core::bail!("decode graph: token {token} is outside the vocabulary");
        }
        #[cfg(feature = "cuda")]
        capture::replay(&self.graph, &self.input, [token, pos as u32])?;
        #[cfg(not(feature = "cuda"))]
        let _ = token;
        cache.advance(1);
        Ok(&self.logits)
    }

    /// Kernel nodes of the captured graph, and its nodes in all (copies, allocations and frees
    /// too).
    pub fn nodes(&self) -> (usize, usize) {
        #[cfg(feature = "cuda")]
        return capture::nodes(&self.graph);
        #[cfg(not(feature = "cuda"))]
        (0, 0)
    }

    /// Positions the graph serves (those below it).
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Any fixed sequence of GPU work captured once and replayed: the time model times its passes
/// over the linears this way, as the decode step runs them (eager timing would add the host's
/// launch cost that a graph step does not pay).
pub struct Recorded {
    #[cfg(feature = "cuda")]
    graph: candle_core::cuda_backend::cudarc::driver::CudaGraph,
}

impl Recorded {
    /// Runs `f` once eagerly, then records it; `f` must free inside what it allocates and do the
    /// same work at every call. An error where graphs do not apply (not CUDA, graphs or the kernels
    /// off) or the driver refuses the capture.
    pub fn record(device: &Device, f: impl Fn() -> Result<()>) -> Result<Self> {
        let Device::Cuda(dev) = device else { candle_core::bail!("CUDA graphs need a CUDA device") };
        if !enabled() || !crate::kernels::enabled() {
            candle_core::bail!("CUDA graphs are off");
        }
        #[cfg(feature = "cuda")]
        return Ok(Self { graph: capture::record(dev, f)? });
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (dev, f);
            candle_core::bail!("built without CUDA")
        }
    }

    /// Kernel nodes of the recorded graph, and its nodes in all.
    pub fn nodes(&self) -> (usize, usize) {
        #[cfg(feature = "cuda")]
        return capture::nodes(&self.graph);
        #[cfg(not(feature = "cuda"))]
        (0, 0)
    }

    /// Launches the recorded work on the device's stream (asynchronous, like any kernel launch).
    pub fn replay(&self) -> Result<()> {
        #[cfg(feature = "cuda")]
        let launched = {
            use candle_core::cuda_backend::WrapErr;
            self.graph.launch().w()
        };
        #[cfg(not(feature = "cuda"))]
        let launched = Ok(());
        launched
    }
}

/// One step on the buffers: what the graph records.
fn step(model: &Model, input: &Tensor, cache: &Cache, logits: &Tensor) -> Result<()> {
    let tokens = input.narrow(0, 0, 1)?.reshape((1, 1))?;
    let pos = input.narrow(0, 1, 1)?;
    let out = model.decode_step(&tokens, &pos, cache)?;
    logits.slice_set(&out, 0, 0)
}

#[cfg(feature = "cuda")]
mod capture {
    use candle_core::cuda_backend::cudarc::driver::{result, sys, CudaGraph, DevicePtr};
    use candle_core::cuda_backend::{CudaDevice, WrapErr};
    use candle_core::{Result, Storage, Tensor};

    /// Runs `f` once eagerly (loading every kernel and filling candle's cache of uploaded
    /// parameters, which capture may not upload), then again under stream capture, and
    /// instantiates what it recorded.
    pub(super) fn record(dev: &CudaDevice, f: impl Fn() -> Result<()>) -> Result<CudaGraph> {
        let stream = dev.cuda_stream();
        let _cache = dev.enable_cuda_graph_htod_cache();
        f()?;
        stream.synchronize().w()?;
        stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL).w()?;
        let recorded = f();
        // Capture must end whatever happened, or the stream stays unusable.
        let graph = stream.end_capture(sys::CUgraphInstantiate_flags_enum(0));
        if let Err(e) = recorded {
            // Errors of the aborted capture that cudarc recorded on the side would surface later.
            let _ = stream.context().check_err();
            candle_core::bail!("CUDA graph capture failed: {e}");
        }
        let graph = graph.w()?.ok_or_else(|| candle_core::Error::Msg("CUDA graph capture recorded nothing".into()))?;
        graph.upload().w()?;
        Ok(graph)
    }

    /// Kernel nodes of `graph` and nodes in all (0 where the driver will not say).
    pub(super) fn nodes(graph: &CudaGraph) -> (usize, usize) {
        let mut n = 0usize;
        // SAFETY: a null node array asks only for the count; the graph is alive while borrowed.
        if unsafe { sys::cuGraphGetNodes(graph.cu_graph(), std::ptr::null_mut(), &mut n) }
            != sys::CUresult::CUDA_SUCCESS
        {
            return (0, 0);
        }
        let mut nodes = vec![std::ptr::null_mut(); n];
        // SAFETY: `nodes` holds the `n` entries the driver fills.
        if unsafe { sys::cuGraphGetNodes(graph.cu_graph(), nodes.as_mut_ptr(), &mut n) } != sys::CUresult::CUDA_SUCCESS
        {
            return (0, 0);
        }
        let kernels = nodes
            .iter()
            .take(n)
            .filter(|&&node| {
                let mut t = sys::CUgraphNodeType::CU_GRAPH_NODE_TYPE_EMPTY;
                // SAFETY: `node` belongs to the live graph; `t` receives its type.
                let ok = unsafe { sys::cuGraphNodeGetType(node, &mut t) } == sys::CUresult::CUDA_SUCCESS;
                ok && t == sys::CUgraphNodeType::CU_GRAPH_NODE_TYPE_KERNEL
            })
            .count();
        (kernels, n)
    }

    /// Uploads `values` into `input` and replays `graph` after it, on the same stream.
    pub(super) fn replay(graph: &CudaGraph, input: &Tensor, values: [u32; 2]) -> Result<()> {
        let (storage, layout) = input.storage_and_layout();
        let Storage::Cuda(c) = &*storage else { candle_core::bail!("decode graph: input not on the GPU") };
        let stream = c.device.cuda_stream();
        let slice = c.as_cuda_slice::<u32>()?;
        if layout.start_offset() != 0 || slice.len() < 2 {
            candle_core::bail!("decode graph: malformed input buffer");
        }
        let (ptr, _sync) = slice.device_ptr(&stream);
        // SAFETY: `ptr` addresses the two u32 of `input`, which outlives the copy (the stream
        // orders it before the replay that reads it); the source is copied before the call returns
        // for pageable host memory.
        unsafe { result::memcpy_htod_async(ptr, &values, stream.cu_stream()) }.w()?;
        graph.launch().w()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::synthetic::SyntheticSource;
    use crate::model::LlamaConfig;

    /// Off CUDA a capture is an error that leaves the cache usable, and the bench's helper quietly
    /// decodes eagerly.
    #[test]
    fn no_graph_off_cuda() -> Result<()> {
        let cfg = LlamaConfig::preset("tiny").expect("tiny preset");
        let model = Model::load(cfg, &mut SyntheticSource::new(3), &Device::Cpu, DType::F32).expect("tiny model");
        let mut cache = Cache::new(model.n_blocks());
        let err = DecodeGraph::capture(&model, &mut cache, 16).unwrap_err().to_string();
        assert!(err.contains("CUDA"), "{err}");
        assert!(try_capture(&model, &mut cache, 16).is_none());
        let ids = Tensor::new(&[[1u32, 2]], &Device::Cpu)?;
        model.forward(&ids, 0, &mut cache)?;
        assert_eq!(cache.seq_len(), 2);
        let ran = std::cell::Cell::new(0);
        let err = Recorded::record(&Device::Cpu, || {
            ran.set(ran.get() + 1);
            Ok(())
        });
        assert!(err.is_err(), "no graph off CUDA");
        assert_eq!(ran.get(), 0, "nothing runs for a graph that is not made");
        Ok(())
    }
}
