//! `SwitchableLinear`: a linear layer whose weight format can change at run time, always re-encoded
//! from the 16-bit master so that errors never stack.

use super::{int8, nf4, Precision};
use crate::kernels;
use candle_core::{DType, Device, Module, Result, Tensor, D};

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
        })
    }

    /// Re-encodes the weight in `precision` from the master.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        if precision == self.precision {
            return Ok(());
        }
        let master = self.master.as_ref().ok_or_else(|| {
            candle_core::Error::Msg("cannot switch precision after the master weights were dropped".into())
        })?;
        let (o, i) = (self.out_features, self.in_features);
        self.encoded = match precision {
            Precision::F16 => Encoded::Dense(master.to_device(&self.device)?.to_dtype(self.weight_dtype)?),
            Precision::Int8 => {
                let w = master_f32(master)?;
                let q = int8::Int8Weight::quantize(&w, o, i);
                let (codes, scales) = q.to_tensors(&self.device)?;
                Encoded::Int8 { codes, scales }
            }
            Precision::Nf4 | Precision::Nf4Dq => {
                let w = master_f32(master)?;
                let q = nf4::Nf4Weight::quantize(&w, o, i, precision == Precision::Nf4Dq);
                let (packed, absmax) = q.to_tensors(&self.device)?;
                Encoded::Nf4 { packed, absmax, table: nf4::pair_table(&self.device)? }
            }
        };
        self.precision = precision;
        Ok(())
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
        let b = |t: &Tensor| (t.elem_count() * t.dtype().size_in_bytes()) as u64;
        match &self.encoded {
            Encoded::Dense(w) => b(w),
            Encoded::Int8 { codes, scales } => b(codes) + b(scales),
            Encoded::Nf4 { packed, absmax, .. } => b(packed) + b(absmax),
        }
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

fn master_f32(master: &Tensor) -> Result<Vec<f32>> {
    master.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
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
    /// Max |Δ| between this layer's weight and the master's, for tests and diagnostics.
    pub fn max_abs_error(&self) -> Result<f32> {
        let Some(master) = &self.master else { return Ok(f32::NAN) };
        let w = self.weight()?.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        w.sub(&master.to_dtype(DType::F32)?)?.abs()?.max(D::Minus1)?.max(0)?.to_scalar::<f32>()
    }
}
