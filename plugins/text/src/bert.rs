//! A lean BERT encoder for inference, loading the same weights and config as
//! `candle_transformers::models::bert::BertModel` (or transformers' `MPNetModel`, the same
//! layers with a relative-position bias in attention) but faster on CPU: query, key and value
//! in one matmul, the attention scale folded into the query weights, a fused softmax,
//! attention fused on the CPU (see `attention`), and GELU in place with a vectorisable erf
//! (see `empathy_simd::fast_math`).

use candle_core::{CpuStorage, Layout, Module, Result, Tensor, bail};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder, embedding, layer_norm, linear};
use rayon::prelude::*;

use crate::attention::Attention;
use crate::config::{Config, Family};
use crate::dense::Dense;
use crate::relative::RelativeBias;
use empathy_simd::Precision;
use empathy_simd::fast_math::erf;
use empathy_simd::widest;

pub struct Bert {
    words: Embedding,
    /// Position embeddings from the first position on, plus BERT's (single) token-type
    /// embedding, added once.
    positions: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    /// MPNet's: shared by every layer.
    relative: Option<RelativeBias>,
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
    pub fn load(vb: VarBuilder, config: &Config, precision: Precision) -> Result<Self> {
        if config.hidden_act != "gelu" {
            bail!("only the erf GELU activation is supported");
        }
        let family = config
            .family()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let h = config.hidden_size;
        let vb_emb = vb.pp("embeddings");
        let words = embedding(config.vocab_size, h, vb_emb.pp("word_embeddings"))?;
        let positions = vb_emb.get(
            (config.max_position_embeddings, h),
            "position_embeddings.weight",
        )?;
        let (positions, relative) = match family {
            Family::Bert => {
                let token_type = vb_emb
                    .get(
                        (config.type_vocab_size.unwrap_or(2), h),
                        "token_type_embeddings.weight",
                    )?
                    .get(0)?;
                (positions.broadcast_add(&token_type)?, None)
            }
            Family::MpNet {
                buckets,
                first_position,
            } => {
                let bias = vb.pp("encoder").get(
                    (buckets, config.num_attention_heads),
                    "relative_attention_bias.weight",
                )?;
                let usable = config
                    .max_position_embeddings
                    .saturating_sub(first_position);
                (
                    positions.narrow(0, first_position, usable)?,
                    Some(RelativeBias::new(&bias)?),
                )
            }
        };
        let embedding_norm = layer_norm(h, config.layer_norm_eps, vb_emb.pp("LayerNorm"))?;
        let scale = 1.0 / ((h / config.num_attention_heads) as f64).sqrt();
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                Layer::load(
                    vb.pp(format!("encoder.layer.{i}")),
                    config,
                    family,
                    scale,
                    precision,
                )
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            words,
            positions,
            embedding_norm,
            layers,
            relative,
            heads: config.num_attention_heads,
            hidden: h,
        })
    }

    /// Tokens a sentence may have: the position embeddings past the first position.
    pub fn max_positions(&self) -> usize {
        self.positions.dim(0).unwrap_or(0)
    }

    /// Whether the dense layers run in bf16 (AMX tiles or AVX-512 BF16).
    pub fn bf16(&self) -> bool {
        self.layers.iter().any(|l| l.up.is_bf16())
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
        let positional = self.relative.as_ref().map(|r| r.for_length(len));
        let attention = if ids.device().is_cpu() {
            Attending::Fused {
                lengths,
                bias: positional.as_deref(),
            }
        } else {
            let positional = positional
                .map(|b| Tensor::from_vec(b, (1, self.heads, len, len), ids.device()))
                .transpose()?;
            Attending::Masked {
                padding: padding_bias(ids, lengths)?,
                positional,
            }
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
    Fused {
        lengths: &'a [usize],
        /// MPNet's relative-position bias, (heads, len, len).
        bias: Option<&'a [f32]>,
    },
    /// Each added to the scores before softmax: padding, when anything is padded, and
    /// MPNet's relative-position bias.
    Masked {
        padding: Option<Tensor>,
        positional: Option<Tensor>,
    },
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
    fn load(
        vb: VarBuilder,
        config: &Config,
        family: Family,
        scale: f64,
        precision: Precision,
    ) -> Result<Self> {
        let (h, inner, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        let names = match family {
            Family::Bert => LayerNames {
                qkv: ("attention.self", ["query", "key", "value"]),
                out: "attention.output.dense",
                norm: "attention.output.LayerNorm",
            },
            Family::MpNet { .. } => LayerNames {
                qkv: ("attention.attn", ["q", "k", "v"]),
                out: "attention.attn.o",
                norm: "attention.LayerNorm",
            },
        };
        let att = vb.pp(names.qkv.0);
        let [q, k, v] = names.qkv.1.map(|name| linear(h, h, att.pp(name)));
        let (q, k, v) = (q?, k?, v?);
        let bias = |l: &Linear| {
            l.bias()
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg("missing bias".into()))
        };
        let qkv = Dense::new(
            Linear::new(
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
            ),
            precision,
        )?;
        Ok(Self {
            qkv,
            attention_out: Dense::new(linear(h, h, vb.pp(names.out))?, precision)?,
            attention_norm: layer_norm(h, eps, vb.pp(names.norm))?,
            up: Dense::new(linear(h, inner, vb.pp("intermediate.dense"))?, precision)?,
            down: Dense::new(linear(inner, h, vb.pp("output.dense"))?, precision)?,
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
            Attending::Fused { lengths, bias } => qkv.apply_op1_no_bwd(&Attention {
                len,
                heads,
                lengths,
                bias: *bias,
            })?,
            Attending::Masked {
                padding,
                positional,
            } => {
                let qkv = qkv
                    .reshape((n, len, 3, heads, hidden / heads))?
                    .permute((2, 0, 3, 1, 4))?
                    .contiguous()?;
                let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
                let mut scores = q.matmul(&k.t()?)?;
                for bias in [padding, positional].into_iter().flatten() {
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

/// Where a layer's weights are in each family's checkpoints.
struct LayerNames {
    /// The attention's prefix and its query, key and value under it.
    qkv: (&'static str, [&'static str; 3]),
    out: &'static str,
    norm: &'static str,
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

widest! {
    /// GELU in place, on the widest vector unit the CPU has.
    fn gelu_dispatch(values: &mut [f32]) => gelu
}

#[inline(always)]
fn gelu(values: &mut [f32]) {
    for v in values {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}
