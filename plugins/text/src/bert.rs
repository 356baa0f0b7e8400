//! A lean BERT encoder for inference, loading the same weights and config as
//! `candle_transformers::models::bert::BertModel` but faster on CPU: query, key and value
//! in one matmul, the attention scale folded into the query weights, a fused softmax,
//! attention fused on the CPU (see `attention`), and a vectorisable erf for GELU in place
//! (libm's scalar erf was 11% of the time).

use candle_core::{CpuStorage, Layout, Module, Result, Tensor, bail};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder, embedding, layer_norm, linear};
use candle_transformers::models::bert::{Config, HiddenAct};
use rayon::prelude::*;

use crate::attention::Attention;
use crate::dense::Dense;

pub struct Bert {
    words: Embedding,
    /// Position embeddings plus the (single) token-type embedding, added once.
    positions: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
}

struct Layer {
    qkv: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    up: Dense,
    down: Dense,
    output_norm: LayerNorm,
}

impl Bert {
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        if config.hidden_act != HiddenAct::Gelu {
            bail!("only the erf GELU activation is supported");
        }
        let h = config.hidden_size;
        let vb_emb = vb.pp("embeddings");
        let words = embedding(config.vocab_size, h, vb_emb.pp("word_embeddings"))?;
        let positions = vb_emb.get(
            (config.max_position_embeddings, h),
            "position_embeddings.weight",
        )?;
        let token_type = vb_emb
            .get((config.type_vocab_size, h), "token_type_embeddings.weight")?
            .get(0)?;
        let positions = positions.broadcast_add(&token_type)?;
        let embedding_norm = layer_norm(h, config.layer_norm_eps, vb_emb.pp("LayerNorm"))?;
        let scale = 1.0 / ((h / config.num_attention_heads) as f64).sqrt();
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), config, scale))
            .collect::<Result<_>>()?;
        Ok(Self {
            words,
            positions,
            embedding_norm,
            layers,
            heads: config.num_attention_heads,
            hidden: h,
        })
    }

    /// Hidden states (n, len, hidden) for `ids` (n, len), where sentence i is its first
    /// `lengths[i]` tokens and padding after; padded rows are not meaningful.
    pub fn forward(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let (n, len) = ids.dims2()?;
        let words = self.words.forward(&ids.flatten_all()?)?;
        let x = words
            .reshape((n, len, self.hidden))?
            .broadcast_add(&self.positions.narrow(0, 0, len)?)?;
        let mut x = self
            .embedding_norm
            .forward(&x)?
            .reshape((n * len, self.hidden))?;
        let attention = if ids.device().is_cpu() {
            Attending::Fused(lengths)
        } else {
            Attending::Masked(padding_bias(ids, lengths)?)
        };
        for layer in &self.layers {
            x = layer.forward(&x, &attention, n, len, self.heads)?;
        }
        x.reshape((n, len, self.hidden))
    }
}

/// How a layer attends: the CPU's fused op (each sentence's own length), or candle's ops
/// elsewhere (CUDA).
enum Attending<'a> {
    Fused(&'a [usize]),
    /// Added to the scores before softmax, when anything is padded.
    Masked(Option<Tensor>),
}

/// (n, 1, 1, len): 0 where attended, f32::MIN where padded; None without padding.
fn padding_bias(ids: &Tensor, lengths: &[usize]) -> Result<Option<Tensor>> {
    let (n, len) = ids.dims2()?;
    if lengths.iter().all(|&l| l == len) {
        return Ok(None);
    }
    let bias: Vec<f32> = lengths
        .iter()
        .flat_map(|&l| (0..len).map(move |j| if j < l { 0.0 } else { f32::MIN }))
        .collect();
    Tensor::from_vec(bias, (n, 1, 1, len), ids.device()).map(Some)
}

impl Layer {
    fn load(vb: VarBuilder, config: &Config, scale: f64) -> Result<Self> {
        let (h, inner, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        let att = vb.pp("attention.self");
        let q = linear(h, h, att.pp("query"))?;
        let k = linear(h, h, att.pp("key"))?;
        let v = linear(h, h, att.pp("value"))?;
        let bias = |l: &Linear| {
            l.bias()
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg("missing bias".into()))
        };
        let qkv = Dense::new(Linear::new(
            Tensor::cat(
                &[
                    (q.weight() * scale)?,
                    k.weight().clone(),
                    v.weight().clone(),
                ],
                0,
            )?,
            Some(Tensor::cat(
                &[(bias(&q)? * scale)?, bias(&k)?, bias(&v)?],
                0,
            )?),
        ))?;
        Ok(Self {
            qkv,
            attention_out: Dense::new(linear(h, h, vb.pp("attention.output.dense"))?)?,
            attention_norm: layer_norm(h, eps, vb.pp("attention.output.LayerNorm"))?,
            up: Dense::new(linear(h, inner, vb.pp("intermediate.dense"))?)?,
            down: Dense::new(linear(inner, h, vb.pp("output.dense"))?)?,
            output_norm: layer_norm(h, eps, vb.pp("output.LayerNorm"))?,
        })
    }

    /// `x` is (n * len, hidden).
    fn forward(
        &self,
        x: &Tensor,
        attention: &Attending,
        n: usize,
        len: usize,
        heads: usize,
    ) -> Result<Tensor> {
        let hidden = x.dim(1)?;
        let qkv = self.qkv.forward(x, None)?;
        let context = match attention {
            Attending::Fused(lengths) => qkv.apply_op1_no_bwd(&Attention {
                len,
                heads,
                lengths,
            })?,
            Attending::Masked(bias) => {
                let qkv = qkv
                    .reshape((n, len, 3, heads, hidden / heads))?
                    .permute((2, 0, 3, 1, 4))?
                    .contiguous()?;
                let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
                let mut scores = q.matmul(&k.t()?)?;
                if let Some(bias) = bias {
                    scores = scores.broadcast_add(bias)?;
                }
                candle_nn::ops::softmax_last_dim(&scores)?
                    .matmul(&v)?
                    .transpose(1, 2)?
                    .contiguous()?
                    .reshape((n * len, hidden))?
            }
        };
        let x = self
            .attention_norm
            .forward(&self.attention_out.forward(&context, Some(x))?)?;
        let up = self.up.forward(&x, None)?;
        let up = if up.device().is_cpu() {
            up.inplace_op1(&GeluErf)?;
            up
        } else {
            up.gelu_erf()?
        };
        self.output_norm.forward(&self.down.forward(&up, Some(&x))?)
    }
}

/// GELU with the exact (erf) form, in place, in a loop the compiler vectorises.
struct GeluErf;

impl candle_core::InplaceOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-fast"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let CpuStorage::F32(data) = storage else {
            bail!("gelu-erf-fast: only f32 is supported");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("gelu-erf-fast: input must be contiguous");
        };
        // Rows of the feed-forward at a time, over the compute threads.
        data[start..end]
            .par_chunks_mut(GELU_CHUNK)
            .for_each(gelu_dispatch);
        Ok(())
    }
}

const GELU_CHUNK: usize = 1 << 14;

/// The AVX2 build of the loop where the CPU has it (8 lanes instead of SSE2's 4).
fn gelu_dispatch(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { gelu_avx2(values) };
    }
    gelu(values);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn gelu_avx2(values: &mut [f32]) {
    gelu(values);
}

#[inline(always)]
fn gelu(values: &mut [f32]) {
    for v in values {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// erf as a rational function on [-4, 4] (outside, erf is +-1 in f32); the
/// coefficients are Eigen's and XLA's f32 erf. Pure arithmetic, so it vectorises.
#[inline(always)]
fn erf(x: f32) -> f32 {
    // Plain mul-add, not f32::mul_add: without FMA enabled at build time that is a libm call.
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    for c in [
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_600_1e-3,
        -1.609_603_3e-2,
    ] {
        p = x2 * p + c;
    }
    let mut q = x2 * -1.456_607_2e-5 - 2.133_740_6e-4;
    for c in [-1.682_827e-3, -7.373_329_2e-3, -1.426_474e-2] {
        q = x2 * q + c;
    }
    x * p / q
}

#[cfg(test)]
mod tests {
    #[test]
    fn erf_matches_f64_erf() {
        let worst = (-6000..=6000)
            .map(|i| f64::from(i) / 1000.0)
            .map(|x| (f64::from(super::erf(x as f32)) - candle_core::cpu::erf::erf_f64(x)).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "max error {worst}");
    }
}
