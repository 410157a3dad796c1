//! `SwitchableLinear`: a linear layer whose weight format can change at run time, always re-encoded
//! from the 16-bit master so that errors never stack.

use super::{int8, nf4, Precision};
use crate::kernels;
use candle_core::{DType, Device, Module, Result, Tensor, D};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Stamps of encodings, unique in the process: a stack ([`super::stacked::Stacked`]) knows by them
/// whether a layer still holds the encoding it stacked.
static NEXT_STAMP: AtomicU64 = AtomicU64::new(1);

fn next_stamp() -> u64 {
    NEXT_STAMP.fetch_add(1, Ordering::Relaxed)
}

/// The weight as it lives on the compute device.
#[derive(Debug, Clone)]
enum Encoded {
    /// `[out, in]` in the compute dtype.
    Dense(Tensor),
    /// `codes`: `[out, in]` u8 (int8 + 128), `scales`: `[out, 1]` f32.
    Int8 { codes: Tensor, scales: Tensor },
    /// `packed`: `[out·in / 2]` u8, `absmax`: `[blocks]` f32, `table`: the byte → code-pair
    /// lookup, uploaded once per layer rather than on every forward.
    Nf4 { packed: Tensor, absmax: Tensor, table: Tensor },
}

impl Encoded {
    /// The stored tensors: the weight, then its scales.
    fn parts(&self) -> Vec<&Tensor> {
        match self {
            Self::Dense(w) => vec![w],
            Self::Int8 { codes, scales } => vec![codes, scales],
            Self::Nf4 { packed, absmax, .. } => vec![packed, absmax],
        }
    }

    /// The same format with `parts` (as [`Self::parts`] orders them) in place of this one's.
    fn with_parts(&self, parts: Vec<Tensor>) -> Result<Self> {
        Ok(match (self, <[Tensor; 2]>::try_from(parts)) {
            (Self::Int8 { .. }, Ok([codes, scales])) => Self::Int8 { codes, scales },
            (Self::Nf4 { table, .. }, Ok([packed, absmax])) => Self::Nf4 { packed, absmax, table: table.clone() },
            (Self::Dense(_), Err(mut one)) if one.len() == 1 => Self::Dense(one.remove(0)),
            _ => candle_core::bail!("an encoding with the wrong number of tensors"),
        })
    }
}

/// A linear layer `y = x·Wᵀ (+ b)` whose `W` can be f16, int8 or nf4.
#[derive(Debug, Clone)]
pub struct SwitchableLinear {
    /// The 16-bit master `[out, in]`, on the host; `None` once dropped for honest memory figures.
    master: Option<Tensor>,
    encoded: Encoded,
    bias: Option<Tensor>,
    precision: Precision,
    out_features: usize,
    in_features: usize,
    device: Device,
    /// The activations' dtype: outputs and dequantized weights come out in it.
    dtype: DType,
    /// The dtype a dense (f16-format) weight is stored in: the master's.
    weight_dtype: DType,
    /// Host encodings kept for reuse (`None`: not caching).
    host_cache: Option<HashMap<Precision, Arc<HostEncoded>>>,
    /// This encoding's stamp: new on every switch, kept when the weight becomes a view of a stack.
    stamp: u64,
}

impl SwitchableLinear {
    /// Wraps a host master `[out, in]`; the layer starts in f16 on `device`, computing in `dtype`.
    /// The dense weight keeps the master's dtype (on CPU, 16-bit weights with f32 activations).
    pub fn new(master: Tensor, bias: Option<Tensor>, device: &Device, dtype: DType) -> Result<Self> {
        let (out_features, in_features) = master.dims2()?;
        let bias = bias.map(|b| b.to_device(device)?.to_dtype(dtype)).transpose()?;
        let weight_dtype = master.dtype();
        let encoded = Encoded::Dense(master.to_device(device)?);
        Ok(Self {
            master: Some(master),
            encoded,
            bias,
            precision: Precision::F16,
            out_features,
            in_features,
            device: device.clone(),
            dtype,
            weight_dtype,
            host_cache: None,
            stamp: next_stamp(),
        })
    }

    /// Re-encodes the weight in `precision` from the master (or from the host cache of
    /// encodings, when [`Self::cache_encodings`] turned it on).
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        if precision == self.precision {
            return Ok(());
        }
        let master = self.master.as_ref().ok_or_else(|| {
            candle_core::Error::Msg("cannot switch precision after the master weights were dropped".into())
        })?;
        self.encoded = match precision {
            Precision::F16 => Encoded::Dense(master.to_device(&self.device)?.to_dtype(self.weight_dtype)?),
            p => {
                let host = match self.host_cache.as_ref().and_then(|c| c.get(&p)) {
                    Some(h) => h.clone(),
                    None => {
                        let h = Arc::new(HostEncoded::encode(master, p)?);
                        if let Some(c) = self.host_cache.as_mut() {
                            c.insert(p, h.clone());
                        }
                        h
                    }
                };
                host.upload(&self.device)?
            }
        };
        self.precision = precision;
        self.stamp = next_stamp();
        Ok(())
    }

    /// Keeps every host encoding made from now on, so a later switch to the same format only
    /// uploads (a sensitivity run applies each layer's formats many times). Host memory only.
    pub fn cache_encodings(&mut self) {
        self.host_cache.get_or_insert_with(HashMap::new);
    }

    /// Puts an encoding made elsewhere (for instance on a prefetch thread) into the cache.
    pub fn insert_encoding(&mut self, precision: Precision, host: Arc<HostEncoded>) {
        if let Some(c) = self.host_cache.as_mut() {
            c.insert(precision, host);
        }
    }

    /// Whether the cache holds `precision`.
    pub fn has_encoding(&self, precision: Precision) -> bool {
        self.host_cache.as_ref().is_some_and(|c| c.contains_key(&precision))
    }

    /// The 16-bit master on the host (`None` once dropped).
    pub fn master(&self) -> Option<&Tensor> {
        self.master.as_ref()
    }

    /// Forgets the master: the layer can no longer switch, but holds only its encoded weight.
    pub fn drop_master(&mut self) {
        self.master = None;
    }

    /// The current format.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The device the layer computes on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `(out_features, in_features)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.out_features, self.in_features)
    }

    /// Bytes of the weight in its current format (the plan's figure, not a measurement).
    pub fn weight_bytes(&self) -> u64 {
        self.precision.weight_bytes(self.out_features, self.in_features)
    }

    /// Bytes of the tensors this layer holds on its device now (bias excluded): the real footprint,
    /// which differs from [`Self::weight_bytes`] when the compute dtype is f32.
    pub fn resident_bytes(&self) -> u64 {
        self.encoded.parts().iter().map(|t| (t.elem_count() * t.dtype().size_in_bytes()) as u64).sum()
    }

    /// The weight `[out, in]` in the compute dtype, dequantized if needed.
    pub fn weight(&self) -> Result<Tensor> {
        let (o, i) = (self.out_features, self.in_features);
        match &self.encoded {
            Encoded::Dense(w) => w.to_dtype(self.dtype),
            Encoded::Int8 { codes, scales } => int8::dequantize_tensor(codes, scales, self.dtype),
            Encoded::Nf4 { packed, absmax, table } => {
                nf4::dequantize_tensor_with_table(table, packed, absmax, o, i, self.dtype)
            }
        }
    }

    /// Rows `ids` of the weight `[n, in]`: the embedding lookup of a tied LM head. Only the selected
    /// rows are dequantized when the format allows it.
    pub fn rows(&self, ids: &Tensor) -> Result<Tensor> {
        let (o, i) = (self.out_features, self.in_features);
        let n = ids.elem_count();
        match &self.encoded {
            Encoded::Dense(w) => w.index_select(ids, 0)?.to_dtype(self.dtype),
            Encoded::Int8 { codes, scales } => {
                int8::dequantize_tensor(&codes.index_select(ids, 0)?, &scales.index_select(ids, 0)?, self.dtype)
            }
            // Rows are whole blocks when `in` is a multiple of the block size.
            Encoded::Nf4 { packed, absmax, table } if i % nf4::NF4_BLOCKSIZE == 0 => {
                let packed = packed.reshape((o, i / 2))?.index_select(ids, 0)?.flatten_all()?;
                let absmax = absmax.reshape((o, i / nf4::NF4_BLOCKSIZE))?.index_select(ids, 0)?.flatten_all()?;
                nf4::dequantize_tensor_with_table(table, &packed, &absmax, n, i, self.dtype)
            }
            Encoded::Nf4 { .. } => self.weight()?.index_select(ids, 0),
        }
    }
}

/// The master's values in f32, converted in parallel (a 400M-weight LM head is seconds on one
/// core).
fn master_f32(master: &Tensor) -> Result<Vec<f32>> {
    use rayon::prelude::*;
    let flat = master.flatten_all()?;
    Ok(match flat.dtype() {
        DType::BF16 => flat.to_vec1::<half::bf16>()?.par_iter().map(|x| x.to_f32()).collect(),
        DType::F16 => flat.to_vec1::<half::f16>()?.par_iter().map(|x| x.to_f32()).collect(),
        _ => flat.to_dtype(DType::F32)?.to_vec1::<f32>()?,
    })
}

/// A weight encoded on the host in a quantized format, ready to upload.
#[derive(Debug)]
pub enum HostEncoded {
    Int8(int8::Int8Weight),
    Nf4(nf4::Nf4Weight),
}

impl HostEncoded {
    /// Encodes `master` `[out, in]` in `precision` (int8, nf4 or nf4_dq).
    pub fn encode(master: &Tensor, precision: Precision) -> Result<Self> {
        let (o, i) = master.dims2()?;
        let w = master_f32(master)?;
        Ok(match precision {
            Precision::Int8 => Self::Int8(int8::Int8Weight::quantize(&w, o, i)),
            Precision::Nf4 | Precision::Nf4Dq => {
                Self::Nf4(nf4::Nf4Weight::quantize(&w, o, i, precision == Precision::Nf4Dq))
            }
            Precision::F16 => candle_core::bail!("f16 is the master itself, not an encoding"),
        })
    }

    fn upload(&self, device: &Device) -> Result<Encoded> {
        Ok(match self {
            Self::Int8(q) => {
                let (codes, scales) = q.to_tensors(device)?;
                Encoded::Int8 { codes, scales }
            }
            Self::Nf4(q) => {
                let (packed, absmax) = q.to_tensors(device)?;
                Encoded::Nf4 { packed, absmax, table: nf4::pair_table(device)? }
            }
        })
    }
}

impl Module for SwitchableLinear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let dims = xs.dims().to_vec();
        let in_features = *dims.last().unwrap_or(&0);
        let rows = xs.elem_count() / in_features.max(1);
        // (…, in) → (rows, in)
        let xs = xs.reshape((rows, in_features))?;
        let fused = match &self.encoded {
            Encoded::Dense(w) => kernels::dense(&xs, w)?,
            Encoded::Int8 { codes, scales } => kernels::int8(&xs, codes, scales)?,
            Encoded::Nf4 { packed, absmax, .. } => {
                kernels::nf4(&xs, packed, absmax, self.out_features, self.in_features)?
            }
        };
        // (rows, in) · (in, out) → (rows, out), by the plain path where no fused kernel applies
        let ys = match fused {
            Some(ys) => ys,
            None => xs.matmul(&self.weight()?.t()?)?,
        };
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = self.out_features;
        }
        let ys = ys.reshape(out_dims)?;
        match &self.bias {
            Some(b) => ys.broadcast_add(b),
            None => Ok(ys),
        }
    }
}

impl SwitchableLinear {
    /// This encoding's stamp.
    pub(super) fn stamp(&self) -> u64 {
        self.stamp
    }

    /// Whether this layer's weight and `other`'s can share one stacked buffer: one format, input
    /// width, device and dtypes, no bias, and for NF4 rows of whole blocks (a block must not straddle
    /// two layers).
    pub(super) fn stackable_with(&self, other: &Self) -> bool {
        let blocks_whole =
            !matches!(self.encoded, Encoded::Nf4 { .. }) || self.in_features.is_multiple_of(nf4::NF4_BLOCKSIZE);
        self.bias.is_none()
            && other.bias.is_none()
            && self.precision == other.precision
            && self.in_features == other.in_features
            && self.device.same_device(&other.device)
            && (self.dtype, self.weight_dtype) == (other.dtype, other.weight_dtype)
            && blocks_whole
    }

    /// `layers` (stackable with each other) as one layer whose output rows are theirs in order, its
    /// weight in one new buffer; no master, so it never switches.
    pub(super) fn stack(layers: &[&Self]) -> Result<Self> {
        let Some(first) = layers.first() else { candle_core::bail!("stack: no layers") };
        let parts = (0..first.encoded.parts().len())
            .map(|i| Tensor::cat(&layers.iter().map(|l| l.encoded.parts()[i]).collect::<Vec<_>>(), 0))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            master: None,
            encoded: first.encoded.with_parts(parts)?,
            bias: None,
            precision: first.precision,
            out_features: layers.iter().map(|l| l.out_features).sum(),
            in_features: first.in_features,
            device: first.device.clone(),
            dtype: first.dtype,
            weight_dtype: first.weight_dtype,
            host_cache: None,
            stamp: next_stamp(),
        })
    }

    /// Makes this layer's weight the view of rows `row..row + n` of `stack`'s (which holds an equal
    /// copy of it there), keeping the stamp: the encoding is the same.
    pub(super) fn view_rows_of(&mut self, stack: &Self, row: usize, n: usize) -> Result<()> {
        let parts = stack
            .encoded
            .parts()
            .iter()
            .zip(self.dim0_per_row())
            .map(|(t, r)| t.narrow(0, row * r, n * r))
            .collect::<Result<Vec<_>>>()?;
        self.encoded = self.encoded.with_parts(parts)?;
        Ok(())
    }

    /// Per stored tensor, its dim-0 entries a weight row: dense and int8 codes and scales one row
    /// each, NF4's flat packed bytes k/2 and absmax k/64.
    fn dim0_per_row(&self) -> Vec<usize> {
        match &self.encoded {
            Encoded::Dense(_) | Encoded::Int8 { .. } => vec![1, 1],
            Encoded::Nf4 { .. } => vec![self.in_features / 2, self.in_features / nf4::NF4_BLOCKSIZE],
        }
    }

    /// Whether this layer's tensors, viewed from weight row `row` of a stack, start on 16-byte
    /// boundaries, as the GPU kernels read them.
    pub(super) fn aligned_from_row(&self, row: usize) -> bool {
        let parts = self.encoded.parts();
        let elem_bytes = |t: &Tensor| t.elem_count() / t.dim(0).unwrap_or(1).max(1) * t.dtype().size_in_bytes();
        parts.iter().zip(self.dim0_per_row()).all(|(t, r)| (row * r * elem_bytes(t)).is_multiple_of(16))
    }

    /// Gives this layer a copy of its weight in a buffer of its own (after it viewed a stack).
    pub(super) fn own_copy(&mut self) -> Result<()> {
        let parts = self.encoded.parts().iter().map(|t| t.copy()).collect::<Result<Vec<_>>>()?;
        self.encoded = self.encoded.with_parts(parts)?;
        Ok(())
    }

    /// The stored weight as the fused kernels take it; `None` for a layer with a bias.
    pub(super) fn weight_ref(&self) -> Option<kernels::WeightRef<'_>> {
        if self.bias.is_some() {
            return None;
        }
        Some(match &self.encoded {
            Encoded::Dense(w) => kernels::WeightRef::Dense(w),
            Encoded::Int8 { codes, scales } => kernels::WeightRef::Int8 { codes, scales },
            Encoded::Nf4 { packed, absmax, .. } => {
                kernels::WeightRef::Nf4 { packed, absmax, n: self.out_features, k: self.in_features }
            }
        })
    }

    /// Max |Δ| between this layer's weight and the master's, for tests and diagnostics.
    pub fn max_abs_error(&self) -> Result<f32> {
        let Some(master) = &self.master else { return Ok(f32::NAN) };
        let w = self.weight()?.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        w.sub(&master.to_dtype(DType::F32)?)?.abs()?.max(D::Minus1)?.max(0)?.to_scalar::<f32>()
    }
}
