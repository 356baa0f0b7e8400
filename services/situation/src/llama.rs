//! A quantized llama forward pass with one KV cache per sequence, so that several
//! sequences at different positions decode together: the weight matmuls (nearly all
//! the work) run once for the whole batch, attention runs per sequence over its own
//! cache. The weights and maths are candle-transformers' `quantized_llama` (same GGUF
//! tensor names, interleaved RoPE as llama.cpp stores llama); only the cache moved
//! out of the model so the model itself is shared read-only.

use anyhow::{Context, Result, ensure};
use candle_core::{
    D, DType, Device, IndexOp, Module, Tensor,
    quantized::{QMatMul, QTensor, gguf_file},
};
use candle_nn::{Embedding, kv_cache::KvCache};

use crate::quant_matrix::QuantMatrix;

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
    /// Intel AMX tiles for passes over many tokens (prompts, scored texts), where the CPU
    /// has AMX; exactly `Q4` elsewhere.
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
    attn_norm: Tensor,
    ffn_norm: Tensor,
}

pub struct Model {
    embed: Embedding,
    layers: Vec<Layer>,
    norm: Tensor,
    output: Weight,
    cos: Tensor,
    sin: Tensor,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    eps: f32,
    pub max_positions: usize,
    device: Device,
}

/// One sequence's keys and values for every layer, preallocated to its longest length.
pub struct SeqCache {
    layers: Vec<KvCache>,
    capacity: usize,
}

impl SeqCache {
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |c| c.current_seq_len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
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
        let norm = t("output_norm.weight")?.dequantize(device)?;
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
                attn_norm: t(&format!("blk.{i}.attn_norm.weight"))?.dequantize(device)?,
                ffn_norm: t(&format!("blk.{i}.ffn_norm.weight"))?.dequantize(device)?,
            });
        }
        let theta: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| 1. / freq_base.powf(i as f32 / head_dim as f32))
            .collect();
        let theta = Tensor::new(theta.as_slice(), device)?;
        let positions = Tensor::arange(0, max_positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max_positions, 1))?;
        let angles = positions.matmul(&theta.reshape((1, head_dim / 2))?)?;
        Ok(Self {
            embed,
            layers,
            norm,
            output,
            cos: angles.cos()?,
            sin: angles.sin()?,
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
        SeqCache {
            layers: (0..self.layers.len())
                .map(|_| KvCache::new(2, capacity))
                .collect(),
            capacity,
        }
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
        ensure!(
            len <= prefix.len(),
            "a fork cannot be longer than its prefix"
        );
        let mut cache = self.new_cache(capacity.max(len));
        if len == 0 {
            return Ok(cache);
        }
        for (dst, src) in cache.layers.iter_mut().zip(&prefix.layers) {
            if let (Some(k), Some(v)) = (src.k()?, src.v()?) {
                let (k, v) = (k.narrow(2, 0, len)?, v.narrow(2, 0, len)?);
                dst.append(&k.contiguous()?, &v.contiguous()?)?;
            }
        }
        Ok(cache)
    }

    /// Runs `tokens` of one sequence (a prompt) through the model, appending to its
    /// cache; returns the logits after the last token, shape (vocab,).
    pub fn prefill(&self, tokens: &[u32], cache: &mut SeqCache) -> Result<Tensor> {
        on_pool(|| self.prefill_here(tokens, cache))
    }

    fn prefill_here(&self, tokens: &[u32], cache: &mut SeqCache) -> Result<Tensor> {
        let t = tokens.len();
        let x = self.layers_forward(tokens, cache)?;
        let x = candle_nn::ops::rms_norm(&x.i((.., t - 1..t, ..))?, &self.norm, self.eps)?;
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
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.eps)?;
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
            pos + t <= cache.capacity,
            "the prompt does not fit the cache"
        );
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let mut x = self.embed.forward(&ids)?;
        let cos = self.cos.narrow(0, pos, t)?;
        let sin = self.sin.narrow(0, pos, t)?;
        let mask = causal_mask(t, pos, &self.device)?;
        let n_rep = self.n_head / self.n_kv_head;
        for (layer, kv) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, self.eps)?;
            let q = self.heads(&linear(&layer.wq, &h, true)?, self.n_head, 1, t)?;
            let k = self.heads(&linear(&layer.wk, &h, true)?, self.n_kv_head, 1, t)?;
            let v = self.heads(&linear(&layer.wv, &h, true)?, self.n_kv_head, 1, t)?;
            let q = candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?;
            let (k, v) = kv.append(&k, &v)?;
            let k = candle_transformers::utils::repeat_kv(k.contiguous()?, n_rep)?;
            let v = candle_transformers::utils::repeat_kv(v.contiguous()?, n_rep)?;
            let att = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?;
            let att = att.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att.matmul(&v)?; // (1, heads, t, head_dim)
            let y = y
                .transpose(1, 2)?
                .reshape((1, t, self.n_head * self.head_dim))?;
            x = (linear(&layer.wo, &y, true)? + x)?;
            x = (self.mlp(layer, &x, true)? + x)?;
        }
        Ok(x)
    }

    /// One decoding step for a batch: sequence i takes `tokens[i]` at its own position
    /// `caches[i].len()`. Returns logits of shape (batch, vocab).
    pub fn step(&self, tokens: &[u32], caches: &mut [&mut SeqCache]) -> Result<Tensor> {
        on_pool(|| self.step_here(tokens, caches))
    }

    fn step_here(&self, tokens: &[u32], caches: &mut [&mut SeqCache]) -> Result<Tensor> {
        let b = tokens.len();
        ensure!(b > 0 && b == caches.len(), "one token per sequence");
        for c in caches.iter() {
            ensure!(c.len() < c.capacity, "a sequence is at its cache capacity");
        }
        let positions: Vec<u32> = caches.iter().map(|c| c.len() as u32).collect();
        let positions = Tensor::new(positions.as_slice(), &self.device)?;
        let half = self.head_dim / 2;
        let cos = self
            .cos
            .index_select(&positions, 0)?
            .reshape((b, 1, half))?;
        let sin = self
            .sin
            .index_select(&positions, 0)?
            .reshape((b, 1, half))?;
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(1)?;
        let mut x = self.embed.forward(&ids)?; // (b, 1, dim)
        let n_rep = self.n_head / self.n_kv_head;
        let scale = 1. / (self.head_dim as f64).sqrt();
        for (l, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, self.eps)?;
            let q = self.heads(&linear(&layer.wq, &h, false)?, self.n_head, b, 1)?;
            let k = self.heads(&linear(&layer.wk, &h, false)?, self.n_kv_head, b, 1)?;
            let v = self.heads(&linear(&layer.wv, &h, false)?, self.n_kv_head, b, 1)?;
            let q = candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?;
            let mut ys = Vec::with_capacity(b);
            for (i, cache) in caches.iter_mut().enumerate() {
                let (ki, vi) = cache.layers[l].append(&k.i(i..i + 1)?, &v.i(i..i + 1)?)?;
                // Grouped-query attention without copying keys: query head h uses kv
                // head h / n_rep, so view the one query position as (kv_heads, n_rep).
                let qi = q
                    .i(i..i + 1)?
                    .reshape((1, self.n_kv_head, n_rep, self.head_dim))?;
                let att = (qi.matmul(&ki.t()?)? * scale)?;
                let att = candle_nn::ops::softmax_last_dim(&att)?;
                ys.push(
                    att.matmul(&vi)?
                        .reshape((1, 1, self.n_head * self.head_dim))?,
                );
            }
            let y = Tensor::cat(&ys, 0)?;
            x = (linear(&layer.wo, &y, false)? + x)?;
            x = (self.mlp(layer, &x, false)? + x)?;
        }
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.eps)?;
        Ok(linear(&self.output, &x, false)?.squeeze(1)?)
    }

    /// (b, t, heads * head_dim) -> (b, heads, t, head_dim), contiguous for RoPE.
    fn heads(&self, x: &Tensor, heads: usize, b: usize, t: usize) -> Result<Tensor> {
        Ok(x.reshape((b, t, heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    fn mlp(&self, layer: &Layer, x: &Tensor, many_rows: bool) -> Result<Tensor> {
        let h = candle_nn::ops::rms_norm(x, &layer.ffn_norm, self.eps)?;
        let gate = candle_nn::ops::silu(&linear(&layer.w_gate, &h, many_rows)?)?;
        let up = linear(&layer.w_up, &h, many_rows)?;
        linear(&layer.w_down, &(gate * up)?, many_rows)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tokenizer::GgufTokenizer;
    use candle_transformers::models::quantized_llama::ModelWeights;

    fn path() -> std::path::PathBuf {
        crate::tokenizer::tests::gguf_path()
    }

    /// The f32 weights give (nearly) the same logits as the GGUF blocks.
    #[test]
    fn f32_weights_match_gguf_blocks() {
        let mut f = std::fs::File::open(path()).expect("run `empathy assets fetch`");
        let ct = gguf_file::Content::read(&mut f).unwrap();
        let tok = GgufTokenizer::from_gguf(&ct).unwrap();
        let f32_model = Model::from_gguf(&ct, &mut f, &Device::Cpu, WeightFormat::F32).unwrap();
        let (gguf_model, _, _) = load();
        let prompt = tok.chat_prompt("You are brief.", "Name a colour.").unwrap();
        let a = f32_model
            .prefill(&prompt, &mut f32_model.new_cache(64))
            .unwrap();
        let b = gguf_model
            .prefill(&prompt, &mut gguf_model.new_cache(64))
            .unwrap();
        // The GGUF path quantizes activations to 8 bits; f32 does not.
        assert_eq!(argmax(&a).unwrap(), argmax(&b).unwrap());
        let scale = max_abs(&b);
        assert!(
            max_abs_diff(&a, &b) < 0.1 * scale,
            "f32 and gguf logits diverge"
        );
    }

    fn load() -> (Model, ModelWeights, GgufTokenizer) {
        let mut f = std::fs::File::open(path()).expect("run `empathy assets fetch`");
        let ct = gguf_file::Content::read(&mut f).unwrap();
        let tok = GgufTokenizer::from_gguf(&ct).unwrap();
        let ours = Model::from_gguf(&ct, &mut f, &Device::Cpu, WeightFormat::Gguf).unwrap();
        let mut f = std::fs::File::open(path()).unwrap();
        let ct = gguf_file::Content::read(&mut f).unwrap();
        let theirs = ModelWeights::from_gguf(ct, &mut f, &Device::Cpu).unwrap();
        (ours, theirs, tok)
    }

    /// The generator and its tokenizer, for tests.
    pub(crate) fn model(format: WeightFormat) -> (Model, GgufTokenizer) {
        let mut f = std::fs::File::open(path()).expect("run `empathy assets fetch`");
        let ct = gguf_file::Content::read(&mut f).unwrap();
        let tok = GgufTokenizer::from_gguf(&ct).unwrap();
        let model = Model::from_gguf(&ct, &mut f, &Device::Cpu, format).unwrap();
        (model, tok)
    }

    pub(crate) fn max_abs(a: &Tensor) -> f32 {
        a.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        max_abs(&(a - b).unwrap())
    }

    /// Our forward matches candle's quantized_llama, in a batch or alone, and greedy
    /// decoding gives the same tokens.
    #[test]
    fn matches_candle_quantized_llama_alone_and_batched() {
        let (model, mut reference, tok) = load();
        let prompt = tok.chat_prompt("You are brief.", "Name a colour.").unwrap();
        let other = tok
            .chat_prompt("You are brief.", "Count to three.")
            .unwrap();

        let input = Tensor::new(prompt.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let want = reference.forward(&input, 0).unwrap().squeeze(0).unwrap();
        let mut cache = model.new_cache(128);
        let got = model.prefill(&prompt, &mut cache).unwrap();
        assert!(max_abs_diff(&want, &got) < 1e-3, "prefill differs");

        // Decode 8 greedy tokens alone (ours and candle's) and beside another sequence.
        let mut other_cache = model.new_cache(128);
        let other_logits = model.prefill(&other, &mut other_cache).unwrap();
        let mut alone = model.fork_cache(&cache, 128).unwrap();
        let mut batched = model.fork_cache(&cache, 128).unwrap();
        let mut next = argmax(&got).unwrap();
        let mut next_other = argmax(&other_logits).unwrap();
        for step in 0..8 {
            let input = Tensor::new(&[next], &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let want = reference
                .forward(&input, prompt.len() + step)
                .unwrap()
                .squeeze(0)
                .unwrap();
            let one = model.step(&[next], &mut [&mut alone]).unwrap();
            let two = model
                .step(&[next_other, next], &mut [&mut other_cache, &mut batched])
                .unwrap();
            let one = one.i(0).unwrap();
            assert!(max_abs_diff(&want, &one) < 1e-3, "step {step} differs");
            assert_eq!(
                one.to_vec1::<f32>().unwrap(),
                two.i(1).unwrap().to_vec1::<f32>().unwrap(),
                "batching changed the logits at step {step}"
            );
            next_other = argmax(&two.i(0).unwrap()).unwrap();
            next = argmax(&one).unwrap();
        }
    }
}

#[cfg(test)]
mod timing;

#[cfg(test)]
mod pieces {
    use super::*;

    /// A prompt prefilled in two pieces (the engine's shared prefix, then the rest,
    /// through a forked cache) or token by token gives the logits of one prefill.
    /// (f32 weights: the GGUF path quantizes activations per call, which moves the
    /// logits by up to ~1 between call shapes.)
    #[test]
    fn prefill_in_pieces_matches_whole() {
        let path = crate::tokenizer::tests::gguf_path();
        let mut f = std::fs::File::open(&path).expect("run `empathy assets fetch`");
        let ct = gguf_file::Content::read(&mut f).unwrap();
        let model = Model::from_gguf(&ct, &mut f, &Device::Cpu, WeightFormat::F32).unwrap();
        let prompt: Vec<u32> = (300..320).collect();
        let whole = model.prefill(&prompt, &mut model.new_cache(64)).unwrap();
        let diff = |a: &Tensor| super::tests::max_abs_diff(&whole, a);
        for cut in [1usize, 10, 19] {
            let mut shared = model.new_cache(cut);
            model.prefill(&prompt[..cut], &mut shared).unwrap();
            let mut c = model.fork_cache(&shared, 64).unwrap();
            let p = model.prefill(&prompt[cut..], &mut c).unwrap();
            assert!(diff(&p) < 1e-3, "cut {cut}: pieces differ by {}", diff(&p));
            let mut c = model.fork_cache(&shared, 64).unwrap();
            let mut last = None;
            for &t in &prompt[cut..] {
                last = Some(model.step(&[t], &mut [&mut c]).unwrap().i(0).unwrap());
            }
            let last = last.unwrap();
            assert!(
                diff(&last) < 1e-3,
                "cut {cut}: steps differ by {}",
                diff(&last)
            );
        }
    }

    /// With f32 and Q4 weights too, a sequence's logits do not depend on what else is in the
    /// batch nor on its place in it (so a seed gives the same situations under any load).
    #[test]
    fn batching_is_bit_exact() {
        for format in [WeightFormat::F32, WeightFormat::Q4] {
            batching_is_bit_exact_for(format);
        }
    }

    fn batching_is_bit_exact_for(format: WeightFormat) {
        let path = crate::tokenizer::tests::gguf_path();
        let mut f = std::fs::File::open(&path).expect("run `empathy assets fetch`");
        let ct = gguf_file::Content::read(&mut f).unwrap();
        let model = Model::from_gguf(&ct, &mut f, &Device::Cpu, format).unwrap();
        let mut shared = model.new_cache(8);
        model
            .prefill(&[300, 301, 302, 303, 304, 305, 306, 307], &mut shared)
            .unwrap();
        let alone = |token: u32| {
            let mut c = model.fork_cache(&shared, 16).unwrap();
            model
                .step(&[token], &mut [&mut c])
                .unwrap()
                .i(0)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        for b in [2usize, 3, 5, 8, 16] {
            let mut caches: Vec<SeqCache> = (0..b)
                .map(|_| model.fork_cache(&shared, 16).unwrap())
                .collect();
            let mut refs: Vec<&mut SeqCache> = caches.iter_mut().collect();
            let tokens: Vec<u32> = (0..b as u32).map(|i| 400 + 7 * i).collect();
            let got = model.step(&tokens, &mut refs).unwrap();
            for row in [0, b / 2, b - 1] {
                assert_eq!(
                    alone(tokens[row]),
                    got.i(row).unwrap().to_vec1::<f32>().unwrap(),
                    "{format:?}: row {row} of a batch of {b} differs from the sequence alone"
                );
            }
        }
    }

    /// With AMX tiles for prompts and scored texts, the next token after a prompt and a
    /// continuation's likelihood stay what the exact Q4 kernel gives, to bf16's rounding.
    #[test]
    fn amx_passes_stay_close_to_q4() {
        if !empathy_plugin_text::amx::available() {
            eprintln!("skipped: no AMX on this CPU");
            return;
        }
        let (exact, tok) = tests::model(WeightFormat::Q4);
        let (tiles, _) = tests::model(WeightFormat::Q4Amx);
        let prompts = [
            "My dog died yesterday. I feel",
            "The train was cancelled and I missed the interview, so",
        ];
        for prompt in prompts {
            let prefix = tok.encode(prompt).unwrap();
            let next = |m: &Model| {
                let mut cache = m.new_cache(prefix.len());
                argmax(&m.prefill(&prefix, &mut cache).unwrap()).unwrap()
            };
            assert_eq!(next(&tiles), next(&exact), "{prompt:?}");
            let target = tok.encode(" so sad and alone").unwrap();
            let (a, b) = (
                tiles.log_likelihood(&prefix, &target).unwrap(),
                exact.log_likelihood(&prefix, &target).unwrap(),
            );
            assert!(
                (a - b).abs() < 0.05 * b.abs().max(1.0),
                "{prompt:?}: {a} vs {b}"
            );
        }
    }

    /// The likelihood of a continuation in one pass equals the product of the
    /// next-token probabilities decoding it one token at a time.
    #[test]
    fn log_likelihood_matches_step_by_step_decoding() {
        let path = crate::tokenizer::tests::gguf_path();
        let mut f = std::fs::File::open(&path).expect("run `empathy assets fetch`");
        let ct = gguf_file::Content::read(&mut f).unwrap();
        let tok = crate::tokenizer::GgufTokenizer::from_gguf(&ct).unwrap();
        let model = Model::from_gguf(&ct, &mut f, &Device::Cpu, WeightFormat::F32).unwrap();
        let prefix = tok.encode("My dog died yesterday. I feel").unwrap();
        let target = tok.encode(" so sad and alone").unwrap();
        let mut cache = model.new_cache(prefix.len() + target.len());
        let mut logits = model.prefill(&prefix, &mut cache).unwrap();
        let mut expected = 0f32;
        for &t in &target {
            let log_p = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
            expected += log_p.get(t as usize).unwrap().to_scalar::<f32>().unwrap();
            logits = model
                .step(&[t], &mut [&mut cache])
                .unwrap()
                .squeeze(0)
                .unwrap();
        }
        let got = model.log_likelihood(&prefix, &target).unwrap();
        assert!((got - expected).abs() < 1e-2, "{got} vs {expected}");
        // A fitting continuation is likelier than an unrelated one of the same kind.
        let odd = tok.encode(" so purple and square").unwrap();
        assert!(got > model.log_likelihood(&prefix, &odd).unwrap());
    }
}
