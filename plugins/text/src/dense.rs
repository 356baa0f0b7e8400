//! `x W^T + b`, plus a residual where the layer adds one, with the bias and the residual
//! folded into the GEMM on the CPU: the output starts as `b + residual` and gemm adds the
//! product to it. candle's Linear and `+` made two more passes over each output (bias,
//! then residual into a fresh allocation). Elsewhere (CUDA) the candle ops run.
//!
//! On the CPU the weights are kept transposed, (in, out) row-major. gemm computes a
//! row-major output as its transpose, `W x^T`, and wants W column by column: stored as
//! checkpoints have it, (out, in), gemm re-packed the whole matrix on every call, which
//! was most of the time for a single short sentence. Where the CPU has AMX or AVX-512
//! BF16 and the precision allows, the weights are bf16 tiles instead (see `amx`).

use candle_core::{Device, Module, Result, Storage, Tensor, bail};
use candle_nn::Linear;

use crate::multiply::{View, multiply};
use empathy_simd::{Precision, amx, tiles};

pub enum Dense {
    /// W^T, (in, out) contiguous, and the bias (out).
    Cpu {
        weight_t: Tensor,
        bias: Tensor,
    },
    /// W^T in bf16, packed as AMX tiles (multiplied on the tiles or by AVX-512 BF16),
    /// and the bias (out).
    Bf16 {
        weight: tiles::Packed,
        bias: Tensor,
    },
    Candle(Linear),
}

impl Dense {
    pub fn new(linear: Linear, precision: Precision) -> Result<Self> {
        let Some(bias) = linear.bias() else {
            bail!("a dense layer without a bias");
        };
        if !linear.weight().device().is_cpu() {
            return Ok(Self::Candle(linear));
        }
        let weight_t = linear.weight().t()?.contiguous()?;
        let bias = bias.contiguous()?;
        let (inner, out) = weight_t.dims2()?;
        if precision.uses_bf16() && tiles::Packed::fits(inner, out) {
            let weight = tiles::Packed::new(&weight_t.flatten_all()?.to_vec1()?, inner, out);
            return Ok(Self::Bf16 { weight, bias });
        }
        Ok(Self::Cpu { weight_t, bias })
    }

    pub fn is_bf16(&self) -> bool {
        matches!(self, Self::Bf16 { .. })
    }

    /// `x` is (rows, in); `residual`, if any, (rows, out).
    pub fn forward(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let (bias, (w_inner, out)) = match self {
            Self::Cpu { weight_t, bias } => (bias, weight_t.dims2()?),
            Self::Bf16 { weight, bias } => (bias, weight.shape()),
            Self::Candle(linear) => {
                let y = linear.forward(x)?;
                return match residual {
                    Some(r) => y + r,
                    None => Ok(y),
                };
            }
        };
        let x = x.contiguous()?;
        let (rows, inner) = x.dims2()?;
        if inner != w_inner {
            bail!("dense: input width {inner}, weights ({out}, {w_inner})");
        }
        let residual = residual.map(Tensor::contiguous).transpose()?;
        if let Some(r) = &residual
            && r.dims2()? != (rows, out)
        {
            bail!("dense: residual {:?}, output ({rows}, {out})", r.shape());
        }
        let (x_storage, x_layout) = x.storage_and_layout();
        let (b_storage, b_layout) = bias.storage_and_layout();
        let residual = residual.as_ref().map(|r| r.storage_and_layout());
        let x = f32s(&x_storage, x_layout)?;
        let b = f32s(&b_storage, b_layout)?;
        if b.len() != out {
            bail!("dense: {} biases for {out} outputs", b.len());
        }
        // The tiles write whole blocks of rows; the rows past `rows` are scratch.
        let padded = match self {
            Self::Bf16 { .. } => rows.next_multiple_of(amx::ROWS),
            _ => rows,
        };
        let mut y = Vec::with_capacity(padded * out);
        match &residual {
            Some((s, l)) => {
                for row in f32s(s, l)?.chunks(out) {
                    y.extend(row.iter().zip(b).map(|(r, b)| r + b));
                }
            }
            None => (0..rows).for_each(|_| y.extend_from_slice(b)),
        }
        y.resize(padded * out, 0.0);
        let threads = candle_core::utils::get_num_threads();
        match self {
            Self::Bf16 { weight, .. } => {
                amx::multiply_add(&mut y, x, rows, weight, threads);
                y.truncate(rows * out);
            }
            Self::Cpu { weight_t, .. } => {
                let (w_storage, w_layout) = weight_t.storage_and_layout();
                gemm_add(
                    &mut y,
                    x,
                    f32s(&w_storage, w_layout)?,
                    (rows, inner, out),
                    threads,
                );
            }
            Self::Candle(_) => bail!("dense: candle layers return above"),
        }
        Tensor::from_vec(y, (rows, out), &Device::Cpu)
    }
}

/// `y += x w` through gemm, `x` (rows, inner), `w` (inner, out), `y` (rows, out), all
/// row-major.
fn gemm_add(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    (rows, inner, out): (usize, usize, usize),
    threads: usize,
) {
    assert!(y.len() == rows * out && x.len() == rows * inner && w.len() == inner * out);
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: y is rows x out (row step out), x rows x inner (row step inner), W^T
    // inner x out (row step out), exactly the lengths asserted above; y is a unique borrow.
    unsafe {
        multiply(
            (rows, inner, out),
            View {
                at: y.as_mut_ptr(),
                row: out,
                col: 1,
            },
            true,
            View {
                at: x.as_ptr(),
                row: inner,
                col: 1,
            },
            View {
                at: w.as_ptr(),
                row: out,
                col: 1,
            },
            parallelism,
        );
    }
}

/// The f32 elements of a contiguous CPU tensor.
fn f32s<'a>(storage: &'a Storage, layout: &candle_core::Layout) -> Result<&'a [f32]> {
    let Storage::Cpu(candle_core::CpuStorage::F32(data)) = storage else {
        bail!("dense: only f32 on the CPU");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("dense: input must be contiguous"),
    }
}
