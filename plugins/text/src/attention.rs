//! Self-attention on the CPU as one op over the fused query/key/value projection: a
//! sentence per task, each head two single-threaded gemm calls that read q, k and v in
//! place and write the context straight into the (tokens, hidden) layout the output
//! projection takes. candle's batched matmul ran a threaded gemm per (sentence, head) on
//! 120x120x32 matrices plus permute copies and a broadcast mask: 19% of the encoder's
//! time on long sentences for 5% of its arithmetic. Padding is skipped, not masked:
//! each sentence attends over its own tokens, and padded rows (which mean pooling
//! drops) are left zero.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, bail};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::multiply::{View, multiply};
use empathy_simd::fast_math::exp;
use empathy_simd::widest;

pub struct Attention<'a> {
    /// Tokens per sentence, padding included.
    pub len: usize,
    pub heads: usize,
    /// Each sentence's own tokens; the rest of its `len` is padding.
    pub lengths: &'a [usize],
    /// Added to every sentence's scores, (heads, len, len): MPNet's relative positions.
    pub bias: Option<&'a [f32]>,
}

impl CustomOp1 for Attention<'_> {
    fn name(&self) -> &'static str {
        "bert-attention"
    }

    /// `qkv` is (sentences * len, 3 * hidden): each token's query (scale folded in), key
    /// and value, heads side by side. Returns (sentences * len, hidden).
    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            bail!("bert-attention: only f32 is supported");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("bert-attention: input must be contiguous");
        };
        let (rows, width) = layout.shape().dims2()?;
        let (len, heads, sentences) = (self.len, self.heads, self.lengths.len());
        if rows != sentences * len || width % (3 * heads) != 0 {
            bail!(
                "bert-attention: shape {:?} does not fit {sentences} x {len} tokens, {heads} heads",
                layout.shape()
            );
        }
        if let Some(&l) = self.lengths.iter().find(|&&l| l > len) {
            bail!("bert-attention: a sentence of {l} tokens in chunks of {len}");
        }
        if self.bias.is_some_and(|b| b.len() != heads * len * len) {
            bail!("bert-attention: the position bias does not fit {heads} heads x {len}^2");
        }
        let hidden = width / 3;
        let qkv = &data[start..end];
        let mut out = vec![0f32; rows * hidden];
        out.par_chunks_mut(len * hidden)
            .zip(qkv.par_chunks(len * width))
            .zip(self.lengths.par_iter())
            .for_each(|((out, qkv), &tokens)| {
                let bias = self.bias.map(|b| Bias { values: b, len });
                sentence(qkv, out, tokens, heads, hidden, bias)
            });
        Ok((CpuStorage::F32(out), Shape::from((rows, hidden))))
    }
}

/// A (heads, len, len) score bias.
#[derive(Clone, Copy)]
struct Bias<'a> {
    values: &'a [f32],
    len: usize,
}

/// One sentence: `qkv` holds its rows of `3 * hidden`, `out` its rows of `hidden`; the
/// first `tokens` rows are the sentence.
fn sentence(
    qkv: &[f32],
    out: &mut [f32],
    tokens: usize,
    heads: usize,
    hidden: usize,
    bias: Option<Bias>,
) {
    let width = 3 * hidden;
    let d = hidden / heads;
    let mut scores = vec![0f32; tokens * tokens];
    for head in 0..heads {
        let q = &qkv[head * d..];
        let k = &qkv[hidden + head * d..];
        let v = &qkv[2 * hidden + head * d..];
        // SAFETY: for both products, every element reached is in bounds: query i, key j and
        // value j are rows i, j < tokens of `qkv` (rows of `width`), columns
        // head*d..+d of their third; scores is tokens x tokens; out rows i < tokens,
        // columns head*d..+d, of `hidden`; scores and out are this task's own.
        unsafe {
            // scores = q k^T: (tokens x d)(d x tokens).
            multiply(
                (tokens, d, tokens),
                View {
                    at: scores.as_mut_ptr(),
                    row: tokens,
                    col: 1,
                },
                false,
                View {
                    at: q.as_ptr(),
                    row: width,
                    col: 1,
                },
                View {
                    at: k.as_ptr(),
                    row: 1,
                    col: width,
                },
                Parallelism::None,
            );
        }
        if let Some(Bias { values, len }) = bias {
            let head_bias = &values[head * len * len..];
            for (i, row) in scores.chunks_mut(tokens).enumerate() {
                for (score, b) in row.iter_mut().zip(&head_bias[i * len..]) {
                    *score += b;
                }
            }
        }
        softmax_rows(&mut scores, tokens);
        // SAFETY: as above.
        unsafe {
            // context = softmax(scores) v: (tokens x tokens)(tokens x d).
            multiply(
                (tokens, tokens, d),
                View {
                    at: out[head * d..].as_mut_ptr(),
                    row: hidden,
                    col: 1,
                },
                false,
                View {
                    at: scores.as_ptr(),
                    row: tokens,
                    col: 1,
                },
                View {
                    at: v.as_ptr(),
                    row: width,
                    col: 1,
                },
                Parallelism::None,
            );
        }
    }
}

widest! {
    /// Softmax over each row of `width` in `scores`.
    fn softmax_rows(scores: &mut [f32], width: usize) => softmax
}

/// `op` over `values` in 16 lanes, then across them: a reduction the compiler vectorises
/// (a plain fold must keep f32 order and stays scalar).
#[inline(always)]
fn reduce(values: &[f32], start: f32, op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [start; 16];
    let chunks = values.chunks_exact(16);
    let tail = chunks.remainder().iter().fold(start, |a, &b| op(a, b));
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = op(*lane, v);
        }
    }
    lanes.into_iter().fold(tail, op)
}

#[inline(always)]
fn softmax(scores: &mut [f32], width: usize) {
    for row in scores.chunks_mut(width) {
        let max = reduce(row, f32::NEG_INFINITY, f32::max);
        for x in row.iter_mut() {
            *x = exp(*x - max);
        }
        let inverse = 1.0 / reduce(row, 0.0, |a, b| a + b);
        for x in row.iter_mut() {
            *x *= inverse;
        }
    }
}
