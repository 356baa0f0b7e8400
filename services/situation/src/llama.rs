//! A quantized llama forward pass with one KV cache per sequence, so that several
//! sequences at different positions decode together: the weight matmuls (nearly all
//! the work) run once for the whole batch, attention runs per sequence over its own
//! cache. The weights and maths are candle-transformers' `quantized_llama` (same GGUF
//! tensor names, interleaved RoPE as llama.cpp stores llama); only the cache moved
//! out of the model so the model itself is shared read-only.

use anyhow::{Context, Result, ensure};
use candle_core::{
    D, Device, IndexOp, Module, Tensor,
    quantized::{QMatMul, QTensor, gguf_file},
};
use candle_nn::Embedding;

pub use self::cache::SeqCache;
use crate::{quant_matrix::QuantMatrix, team::Team};

/// How the weight matrices are kept in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightFormat {
    /// As stored in the GGUF (Q4_1 blocks, ~100 MB) through candle's QMatMul. candle
    /// 0.11 has no SIMD kernel for Q4_1 on x86 (and none at all without `-C
    /// target-cpu`), so this is slow; kept as the reference candle's own llama uses.
    Gguf,
    /// Dequantized to f32 at load (~540 MB): matmuls run in `gemm`, which picks
    /// AVX2/AVX-512 at run time.
    F32,
    /// As stored (Q4_1 layers, Q8_0 output projection) through our kernel
    /// (`quant_matrix.rs`, AVX2 chosen at run time): a decoding step reads 4.5 bits a
    /// weight instead of 32, about 4x faster on 2 cores.
    Q4,
    /// As `Q4` for decoding steps, plus a bf16 copy of the weights (~270 MB more) in
    /// AMX tiles' layout for passes over many tokens (prompts, scored texts), where the
    /// CPU multiplies them (Intel AMX, else AVX-512 BF16); exactly `Q4` elsewhere.
    Q4Amx,
}

/// A weight matrix for `x @ w.T`.
enum Weight {
    Candle(QMatMul),
    Q4(QuantMatrix),
}

/// A weight matrix in the chosen format (tensors that are not Q4_1 become f32).
fn weight(qt: QTensor, format: WeightFormat) -> Result<Weight> {
    Ok(match format {
        WeightFormat::Gguf => Weight::Candle(QMatMul::from_qtensor(qt)?),
        // The kernel is for CPUs; a GPU keeps the blocks in candle's own kernels.
        WeightFormat::Q4 | WeightFormat::Q4Amx if !qt.device().is_cpu() => {
            Weight::Candle(QMatMul::from_qtensor(qt)?)
        }
        WeightFormat::Q4 | WeightFormat::Q4Amx => match QuantMatrix::from_qtensor(&qt)? {
            Some(m) if format == WeightFormat::Q4Amx => Weight::Q4(m.with_tiles()),
            Some(m) => Weight::Q4(m),
            None => Weight::Candle(QMatMul::Tensor(qt.dequantize(&qt.device())?)),
        },
        WeightFormat::F32 => Weight::Candle(QMatMul::Tensor(qt.dequantize(&qt.device())?)),
    })
}

/// `x @ w.T` over the last dimension, with every leading dimension folded into the
/// rows, so a batch of sequences is one matrix product (not one per sequence).
/// `many_rows`: a pass over a prompt or a scored text, not a decoding step (see
/// `QuantMatrix::forward`).
fn linear(w: &Weight, x: &Tensor, many_rows: bool) -> Result<Tensor> {
    let dims = x.dims();
    let (last, lead) = dims.split_last().context("linear on a scalar")?;
    let rows = x.reshape(((), *last))?;
    let y = match w {
        Weight::Q4(m) => m.forward(&rows, many_rows)?,
        // gemm takes another path for a single row, whose sums differ in the last
        // bits from the batched one; two rows keep one sequence's logits identical
        // whatever else is decoded beside it (same seed, same situations, any load).
        Weight::Candle(w @ QMatMul::Tensor(_)) if rows.dim(0)? == 1 => w
            .forward(&Tensor::cat(&[&rows, &rows], 0)?)?
            .narrow(0, 0, 1)?,
        Weight::Candle(w) => w.forward(&rows)?,
    };
    let mut out: Vec<usize> = lead.to_vec();
    out.push(y.dim(1)?);
    Ok(y.reshape(out)?)
}

struct Layer {
    wq: Weight,
    wk: Weight,
    wv: Weight,
    wo: Weight,
    w_gate: Weight,
    w_up: Weight,
    w_down: Weight,
    attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
}

pub struct Model {
    embed: Embedding,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    output: Weight,
    /// cos and sin of each position's rotary angles, head_dim / 2 per position.
    cos: Vec<f32>,
    sin: Vec<f32>,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    eps: f32,
    pub max_positions: usize,
    device: Device,
}

impl Model {
    pub fn from_gguf<R: std::io::Read + std::io::Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        device: &Device,
        format: WeightFormat,
    ) -> Result<Self> {
        let md = |key: &str| {
            ct.metadata
                .get(key)
                .with_context(|| format!("the GGUF has no {key}"))
        };
        let arch = md("general.architecture")?.to_string()?;
        ensure!(
            arch == "llama",
            "architecture {arch:?}: only llama is supported"
        );
        let n_head = md("llama.attention.head_count")?.to_u32()? as usize;
        let n_kv_head = md("llama.attention.head_count_kv")?.to_u32()? as usize;
        let n_layer = md("llama.block_count")?.to_u32()? as usize;
        let dim = md("llama.embedding_length")?.to_u32()? as usize;
        let rope_dim = md("llama.rope.dimension_count")?.to_u32()? as usize;
        let eps = md("llama.attention.layer_norm_rms_epsilon")?.to_f32()?;
        let freq_base = md("llama.rope.freq_base")
            .and_then(|v| Ok(v.to_f32()?))
            .unwrap_or(10_000.);
        let max_positions = md("llama.context_length")
            .and_then(|v| Ok(v.to_u32()? as usize))
            .unwrap_or(2048);
        let head_dim = dim / n_head;
        ensure!(rope_dim == head_dim, "partial RoPE is not supported");

        let mut t = |name: &str| {
            ct.tensor(reader, name, device)
                .with_context(|| format!("reading tensor {name}"))
        };
        let embed_q = t("token_embd.weight")?;
        let embed_f32 = embed_q.dequantize(device)?;
        let embed = Embedding::new(embed_f32.clone(), dim);
        let norm = t("output_norm.weight")?.dequantize(device)?.to_vec1()?;
        // SmolLM2 ties the output projection to the embeddings.
        let output = match t("output.weight") {
            Ok(w) => weight(w, format)?,
            // Tied: f32 shares the embedding table rather than holding a second copy.
            Err(_) if format == WeightFormat::F32 => Weight::Candle(QMatMul::Tensor(embed_f32)),
            Err(_) => weight(embed_q, format)?,
        };
        let mut layers = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let mut q = |name: &str| -> Result<Weight> {
                weight(t(&format!("blk.{i}.{name}.weight"))?, format)
            };
            let (wq, wk, wv, wo) = (q("attn_q")?, q("attn_k")?, q("attn_v")?, q("attn_output")?);
            let (w_gate, w_up, w_down) = (q("ffn_gate")?, q("ffn_up")?, q("ffn_down")?);
            layers.push(Layer {
                wq,
                wk,
                wv,
                wo,
                w_gate,
                w_up,
                w_down,
                attn_norm: t(&format!("blk.{i}.attn_norm.weight"))?
                    .dequantize(device)?
                    .to_vec1()?,
                ffn_norm: t(&format!("blk.{i}.ffn_norm.weight"))?
                    .dequantize(device)?
                    .to_vec1()?,
            });
        }
        let theta: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| 1. / freq_base.powf(i as f32 / head_dim as f32))
            .collect();
        let angles: Vec<f32> = (0..max_positions)
            .flat_map(|p| theta.iter().map(move |t| p as f32 * t))
            .collect();
        Ok(Self {
            embed,
            layers,
            norm,
            output,
            cos: angles.iter().map(|a| a.cos()).collect(),
            sin: angles.iter().map(|a| a.sin()).collect(),
            n_head,
            n_kv_head,
            head_dim,
            eps,
            max_positions,
            device: device.clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// An empty cache for a sequence of at most `capacity` tokens.
    pub fn new_cache(&self, capacity: usize) -> SeqCache {
        let capacity = capacity.min(self.max_positions);
        SeqCache::new(self.layers.len(), self.n_kv_head, self.head_dim, capacity)
    }

    /// A new cache of `capacity` holding a copy of `prefix` (prompt sharing: k
    /// situations of one request decode from one prefilled prompt).
    pub fn fork_cache(&self, prefix: &SeqCache, capacity: usize) -> Result<SeqCache> {
        self.fork_cache_first(prefix, prefix.len(), capacity)
    }

    /// A new cache of `capacity` holding a copy of the first `len` positions of `prefix`.
    pub fn fork_cache_first(
        &self,
        prefix: &SeqCache,
        len: usize,
        capacity: usize,
    ) -> Result<SeqCache> {
        prefix.fork(len, capacity.min(self.max_positions))
    }

    /// Runs `tokens` of one sequence (a prompt) through the model, appending to its
    /// cache; returns the logits after the last token, shape (vocab,).
    pub fn prefill(&self, tokens: &[u32], cache: &mut SeqCache) -> Result<Tensor> {
        on_pool(|| self.prefill_here(tokens, cache))
    }

    fn prefill_here(&self, tokens: &[u32], cache: &mut SeqCache) -> Result<Tensor> {
        let t = tokens.len();
        let x = self.layers_forward(tokens, cache)?;
        let x = self.rms_norm(&x.i((.., t - 1..t, ..))?, &self.norm)?;
        Ok(linear(&self.output, &x, false)?.flatten_all()?)
    }

    /// The model's log-probability of `target` right after `prefix`: the sum over
    /// `target`'s tokens of log p(token | everything before it). One forward pass.
    pub fn log_likelihood(&self, prefix: &[u32], target: &[u32]) -> Result<f32> {
        let cache = self.new_cache(prefix.len() + target.len());
        self.log_likelihood_in(cache, prefix, target)
    }

    /// As `log_likelihood`, after what `cache` already holds and then `rest` (at
    /// least one token: its output predicts `target`'s first). `cache` needs room for
    /// `rest` and `target`.
    pub fn log_likelihood_in(
        &self,
        mut cache: SeqCache,
        rest: &[u32],
        target: &[u32],
    ) -> Result<f32> {
        Ok(self.likelihood_then(&mut cache, rest, target, &[])?.0)
    }

    /// One pass over `rest`, `target` and `tail` after what `cache` holds (appended to
    /// it): log p(target | everything before it), and the logits after the last token,
    /// shape (vocab,). `rest` must not be empty (its last output predicts `target`).
    pub fn likelihood_then(
        &self,
        cache: &mut SeqCache,
        rest: &[u32],
        target: &[u32],
        tail: &[u32],
    ) -> Result<(f32, Tensor)> {
        on_pool(|| self.likelihood_then_here(cache, rest, target, tail))
    }

    fn likelihood_then_here(
        &self,
        cache: &mut SeqCache,
        rest: &[u32],
        target: &[u32],
        tail: &[u32],
    ) -> Result<(f32, Tensor)> {
        ensure!(
            !rest.is_empty() && !target.is_empty(),
            "a likelihood needs a prefix and a target"
        );
        let tokens = [rest, target, tail].concat();
        let x = self.layers_forward(&tokens, cache)?;
        // The positions whose next token is a target token, then the last one.
        let from = rest.len() - 1;
        let last = tokens.len() - 1;
        let x = Tensor::cat(
            &[
                &x.i((.., from..from + target.len(), ..))?,
                &x.i((.., last..last + 1, ..))?,
            ],
            1,
        )?;
        let x = self.rms_norm(&x, &self.norm)?;
        let logits = linear(&self.output, &x, true)?.squeeze(0)?;
        let next = logits.i(target.len())?;
        let log_p = candle_nn::ops::log_softmax(&logits.narrow(0, 0, target.len())?, D::Minus1)?;
        let ids = Tensor::new(target, &self.device)?.unsqueeze(1)?;
        let sum = log_p.gather(&ids, 1)?.sum_all()?.to_scalar::<f32>()?;
        Ok((sum, next))
    }

    /// `tokens` of one sequence through every layer, appended to its cache; the hidden
    /// states before the final norm, shape (1, t, dim).
    fn layers_forward(&self, tokens: &[u32], cache: &mut SeqCache) -> Result<Tensor> {
        ensure!(!tokens.is_empty(), "nothing to prefill");
        let pos = cache.len();
        let t = tokens.len();
        ensure!(
            pos + t <= cache.capacity(),
            "the prompt does not fit the cache"
        );
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let mut x = self.embed.forward(&ids)?;
        let half = self.head_dim / 2;
        let angles = |table: &[f32]| {
            Tensor::from_slice(
                &table[pos * half..(pos + t) * half],
                (t, half),
                &self.device,
            )
        };
        let (cos, sin) = (angles(&self.cos)?, angles(&self.sin)?);
        let mask = causal_mask(t, pos, &self.device)?;
        let n_rep = self.n_head / self.n_kv_head;
        for (l, layer) in self.layers.iter().enumerate() {
            let h = self.rms_norm(&x, &layer.attn_norm)?;
            let q = self.heads(&linear(&layer.wq, &h, true)?, self.n_head, 1, t)?;
            let k = self.heads(&linear(&layer.wk, &h, true)?, self.n_kv_head, 1, t)?;
            let v = self.heads(&linear(&layer.wv, &h, true)?, self.n_kv_head, 1, t)?;
            let q = candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?;
            let rows = |x: &Tensor| -> Result<Vec<f32>> { Ok(x.flatten_all()?.to_vec1()?) };
            cache.write(l, &rows(&k)?, &rows(&v)?, t)?;
            let (k, v) = cache.tensors(l, pos + t, &self.device)?;
            let k = candle_transformers::utils::repeat_kv(k, n_rep)?;
            let v = candle_transformers::utils::repeat_kv(v, n_rep)?;
            let att = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?;
            let att = att.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att.matmul(&v)?; // (1, heads, t, head_dim)
            let y = y
                .transpose(1, 2)?
                .reshape((1, t, self.n_head * self.head_dim))?;
            x = (linear(&layer.wo, &y, true)? + x)?;
            x = (self.mlp(layer, &x)? + x)?;
        }
        cache.commit(t);
        Ok(x)
    }

    /// One decoding step for a batch: sequence i takes `tokens[i]` at its own position
    /// `caches[i].len()`. Returns logits of shape (batch, vocab).
    pub fn step(&self, tokens: &[u32], caches: &mut [&mut SeqCache]) -> Result<Tensor> {
        // On the compute pool as `on_pool`, with a team for the step's loops.
        Team::with(|team| self.step_here(team, tokens, caches))
    }

    /// (b, t, heads * head_dim) -> (b, heads, t, head_dim), contiguous for RoPE.
    fn heads(&self, x: &Tensor, heads: usize, b: usize, t: usize) -> Result<Tensor> {
        Ok(x.reshape((b, t, heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    fn mlp(&self, layer: &Layer, x: &Tensor) -> Result<Tensor> {
        let h = self.rms_norm(x, &layer.ffn_norm)?;
        let gate = candle_nn::ops::silu(&linear(&layer.w_gate, &h, true)?)?;
        let up = linear(&layer.w_up, &h, true)?;
        linear(&layer.w_down, &(gate * up)?, true)
    }

    fn rms_norm(&self, x: &Tensor, weight: &[f32]) -> Result<Tensor> {
        let weight = Tensor::from_slice(weight, weight.len(), &self.device)?;
        Ok(candle_nn::ops::rms_norm(x, &weight, self.eps)?)
    }
}

/// Runs a forward pass on a thread of the compute pool. From any other thread, each of
/// the pass's ~200 parallel matrix products handed its work to the pool and put the
/// caller to sleep until it was done; most of a decoding step of one sequence was those
/// wake-ups (15 -> 8 ms on 2 threads, Intel Xeon). From inside the pool the work is
/// split where it runs.
fn on_pool<R: Send>(pass: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| pass())
}

/// Additive causal mask (t, pos + t): 0 where attention is allowed, -inf elsewhere.
fn causal_mask(t: usize, pos: usize, device: &Device) -> Result<Tensor> {
    let kv = pos + t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..kv).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0. }))
        .collect();
    Ok(Tensor::from_vec(mask, (t, kv), device)?)
}

/// Index of the largest logit (greedy decoding, for tests).
pub fn argmax(logits: &Tensor) -> Result<u32> {
    Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?)
}

mod cache;
mod decode;

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod timing;

#[cfg(test)]
mod pieces;
