//! The reader's forward pass (quantized GGUF on candle) for reading, not writing: a
//! prompt prefix is run once and its keys and values kept, each text then runs only its
//! own tokens after it, and only the last position's hidden state comes out, for the
//! caller to score against the few tokens it cares about. Two architectures, which
//! differ only in details (`Arch`): Gemma 3 (270M, the default reader) and Qwen2 (the
//! larger reader, Qwen2.5-Coder-1.5B-Instruct).
//!
//! candle-transformers has a quantized Gemma 3, but it masks a cached prefix out of a
//! multi-token continuation and always computes all 262,144 logits; its quantized
//! Qwen2 keeps one cache in the model, so a prefix cannot be shared between texts. This
//! is the same networks (Gemma checked against transformers, Qwen2 against candle's, in
//! the tests) without those costs. The weights are dequantized at load (the file stays
//! 4-bit on disk): to bf16 tiles where the CPU multiplies bf16 (AMX, AVX-512 BF16), else
//! to f32 panels packed for AVX2 (`Matrix`).

use anyhow::{Context, Result, ensure};
use candle_core::{
    Device, Module, Tensor,
    quantized::{QMatMul, QTensor, gguf_file::Content},
};
use candle_transformers::quantized_nn::RmsNorm;
use empathy_simd::{Precision, amx, fast_math::exp, panels, tiles, widest};

/// Every text is read within the sliding window of Gemma's local layers, so no layer
/// needs a window mask (Qwen2 has no window).
pub const MAX_POSITIONS: usize = 512;

/// What tells the two architectures apart.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Arch {
    /// Gemma 3: queries and keys normed, every sublayer's output normed too, GELU,
    /// embeddings scaled by sqrt(dim) and tied to the output, local and global layers
    /// rotating with different bases.
    Gemma3,
    /// Qwen2: biases on the query, key and value projections, SiLU, an output matrix of
    /// its own, one rotary base.
    Qwen2,
}

impl Arch {
    /// The architecture a GGUF's `general.architecture` names.
    pub fn of(content: &Content) -> Result<Arch> {
        let name = content
            .metadata
            .get("general.architecture")
            .context("the GGUF names no architecture")?
            .to_string()?;
        match name.as_str() {
            "gemma3" => Ok(Arch::Gemma3),
            "qwen2" => Ok(Arch::Qwen2),
            other => anyhow::bail!("the reader runs Gemma 3 or Qwen2, not {other}"),
        }
    }

    fn key(self) -> &'static str {
        match self {
            Arch::Gemma3 => "gemma3",
            Arch::Qwen2 => "qwen2",
        }
    }
}

struct Layer {
    q: Matrix,
    k: Matrix,
    v: Matrix,
    o: Matrix,
    /// Qwen2's query, key and value biases.
    qkv_bias: Option<(Tensor, Tensor, Tensor)>,
    /// Gemma's query and key norms.
    qk_norm: Option<(RmsNorm, RmsNorm)>,
    attn_norm: RmsNorm,
    ffn_norm: RmsNorm,
    /// Gemma's norms of the attention's and the feed-forward's outputs.
    post_norms: Option<(RmsNorm, RmsNorm)>,
    gate: Matrix,
    up: Matrix,
    down: Matrix,
    /// Rotary tables, (MAX_POSITIONS, head_dim / 2): local layers and global layers
    /// rotate with different bases.
    cos: Tensor,
    sin: Tensor,
}

pub struct Decoder {
    arch: Arch,
    layers: Vec<Layer>,
    /// The token embeddings, kept quantized as the GGUF has them: the tables are
    /// 150,000 rows and more, and a text looks up only its own.
    embeddings: QTensor,
    /// The output matrix where it is not the embeddings (Qwen2), likewise.
    output: Option<QTensor>,
    norm: RmsNorm,
    dim: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

/// The keys and values of a run prefix, per layer: (1, kv_heads, len, head_dim).
#[derive(Clone)]
pub struct Prefix {
    kv: Vec<(Tensor, Tensor)>,
    pub len: usize,
}

impl Decoder {
    pub fn from_gguf<R: std::io::Read + std::io::Seek>(
        content: &Content,
        reader: &mut R,
        precision: Precision,
    ) -> Result<Decoder> {
        let device = Device::Cpu;
        let arch = Arch::of(content)?;
        let meta = |key: &str| {
            let key = format!("{}.{key}", arch.key());
            content
                .metadata
                .get(&key)
                .with_context(|| format!("the GGUF has no {key}"))
        };
        let heads = meta("attention.head_count")?.to_u32()? as usize;
        let kv_heads = meta("attention.head_count_kv")?.to_u32()? as usize;
        let blocks = meta("block_count")?.to_u32()? as usize;
        let dim = meta("embedding_length")?.to_u32()? as usize;
        let head_dim = match arch {
            Arch::Gemma3 => meta("attention.key_length")?.to_u32()? as usize,
            Arch::Qwen2 => dim / heads,
        };
        let eps = f64::from(meta("attention.layer_norm_rms_epsilon")?.to_f32()?);
        let global_base = meta("rope.freq_base").and_then(|v| Ok(v.to_f32()?));
        let global_base = global_base.unwrap_or(1_000_000.0);
        // Gemma 3: five local layers, then a global one.
        let pattern = match arch {
            Arch::Gemma3 => {
                let window = meta("attention.sliding_window")?.to_u32()? as usize;
                ensure!(
                    window >= MAX_POSITIONS,
                    "a sliding window of {window} tokens is too short"
                );
                meta("attention.sliding_window_type")
                    .and_then(|v| Ok(v.to_u32()? as usize))
                    .unwrap_or(6)
            }
            Arch::Qwen2 => 1,
        };

        let mut tensor = |name: &str| content.tensor(reader, name, &device);
        let norm = |t| RmsNorm::from_qtensor(t, eps);
        let embeddings = tensor("token_embd.weight")?;
        let output = match arch {
            Arch::Gemma3 => None,
            Arch::Qwen2 => Some(tensor("output.weight")?),
        };
        let final_norm = norm(tensor("output_norm.weight")?)?;
        let mut layers = Vec::with_capacity(blocks);
        for i in 0..blocks {
            let mut t = |name: &str| tensor(&format!("blk.{i}.{name}"));
            let base = if (i + 1) % pattern == 0 {
                global_base
            } else {
                10_000.0
            };
            let (cos, sin) = rotary(head_dim, base, &device)?;
            let mut matrix = |name: &str| Matrix::new(t(&format!("{name}.weight"))?, precision);
            let (q, k, v, o) = (
                matrix("attn_q")?,
                matrix("attn_k")?,
                matrix("attn_v")?,
                matrix("attn_output")?,
            );
            let (gate, up, down) = (matrix("ffn_gate")?, matrix("ffn_up")?, matrix("ffn_down")?);
            let mut norm = |name: &str| norm(t(&format!("{name}.weight"))?);
            let (attn_norm, ffn_norm) = (norm("attn_norm")?, norm("ffn_norm")?);
            let (qk_norm, post_norms) = match arch {
                Arch::Gemma3 => (
                    Some((norm("attn_q_norm")?, norm("attn_k_norm")?)),
                    Some((norm("post_attention_norm")?, norm("post_ffw_norm")?)),
                ),
                Arch::Qwen2 => (None, None),
            };
            let qkv_bias = match arch {
                Arch::Gemma3 => None,
                Arch::Qwen2 => {
                    let mut bias = |name: &str| t(&format!("{name}.bias"))?.dequantize(&device);
                    Some((bias("attn_q")?, bias("attn_k")?, bias("attn_v")?))
                }
            };
            layers.push(Layer {
                q,
                k,
                v,
                o,
                qkv_bias,
                qk_norm,
                attn_norm,
                ffn_norm,
                post_norms,
                gate,
                up,
                down,
                cos,
                sin,
            });
        }
        Ok(Decoder {
            arch,
            layers,
            embeddings,
            output,
            norm: final_norm,
            dim,
            heads,
            kv_heads,
            head_dim,
        })
    }

    /// The output rows of `ids` (Gemma's are its embeddings), (ids, dim) in f32.
    pub fn output_rows(&self, ids: &[u32]) -> Result<Tensor> {
        let output = self.output.as_ref().unwrap_or(&self.embeddings);
        Ok(output.embedding(&Tensor::new(ids, &Device::Cpu)?)?)
    }

    /// Runs `ids` after `prefix` (none: from the start): the keys and values of both,
    /// and the final-normed hidden state of the last token, (dim,).
    pub fn forward(&self, prefix: Option<&Prefix>, ids: &[u32]) -> Result<(Prefix, Tensor)> {
        let mut run = self.forward_many(&[(prefix, ids)])?;
        run.pop().context("one run in, one out")
    }

    /// `forward` for several token runs at once, each after its own prefix. Their rows
    /// go through each weight matrix together, so the weights are read from memory once
    /// for all of them (on a CPU, much of a short text's cost); only attention is per
    /// run, and each run's answer is what it would be alone.
    pub fn forward_many(
        &self,
        runs: &[(Option<&Prefix>, &[u32])],
    ) -> Result<Vec<(Prefix, Tensor)>> {
        ensure!(!runs.is_empty(), "nothing to read");
        let mut spans = Vec::with_capacity(runs.len());
        let mut ids = Vec::new();
        for (prefix, run) in runs {
            let past = prefix.map_or(0, |p| p.len);
            ensure!(!run.is_empty(), "nothing to read");
            ensure!(
                past + run.len() <= MAX_POSITIONS,
                "{} tokens are more than the reader's {MAX_POSITIONS}",
                past + run.len()
            );
            spans.push(Span {
                past,
                start: ids.len(),
                len: run.len(),
            });
            ids.extend_from_slice(run);
        }
        let ids = Tensor::new(ids.as_slice(), &Device::Cpu)?;
        let mut h = self.embeddings.embedding(&ids)?;
        if self.arch == Arch::Gemma3 {
            h = (h * (self.dim as f64).sqrt())?;
        }
        let mut h = h.unsqueeze(0)?;
        let masks = spans
            .iter()
            .map(|s| causal_mask(s.past, s.len))
            .collect::<Result<Vec<_>>>()?;
        let mut kv = vec![Vec::with_capacity(self.layers.len()); runs.len()];
        for (i, layer) in self.layers.iter().enumerate() {
            let cached: Vec<_> = runs.iter().map(|(p, _)| p.map(|p| &p.kv[i])).collect();
            let (attended, layer_kv) = self.attention(layer, &h, &spans, &cached, &masks)?;
            let post = |norm: Option<&RmsNorm>, x: Tensor| match norm {
                Some(norm) => norm.forward(&x),
                None => Ok(x),
            };
            let post_norms = layer.post_norms.as_ref();
            h = (h + post(post_norms.map(|n| &n.0), attended)?)?;
            let x = layer.ffn_norm.forward(&h)?;
            let (gate, up) = (layer.gate.forward(&x)?, layer.up.forward(&x)?);
            let gated = match self.arch {
                Arch::Gemma3 => gelu_times(&gate, &up)?,
                Arch::Qwen2 => (gate.silu()? * up)?,
            };
            let out = layer.down.forward(&gated)?;
            h = (h + post(post_norms.map(|n| &n.1), out)?)?;
            for (run_kv, layer_kv) in kv.iter_mut().zip(layer_kv) {
                run_kv.push(layer_kv);
            }
        }
        let h = h.get(0)?;
        spans
            .iter()
            .zip(kv)
            .map(|(span, kv)| {
                let last = self.norm.forward(&h.get(span.start + span.len - 1)?)?;
                let len = span.past + span.len;
                Ok((Prefix { kv, len }, last))
            })
            .collect()
    }

    /// The runs' attention: the projections of all their rows at once, then each
    /// run's own (`attend`), then the output projection of all again.
    fn attention(
        &self,
        layer: &Layer,
        h: &Tensor,
        spans: &[Span],
        cached: &[Option<&(Tensor, Tensor)>],
        masks: &[Tensor],
    ) -> Result<(Tensor, Vec<(Tensor, Tensor)>)> {
        let x = layer.attn_norm.forward(h)?;
        let (mut q, mut k, mut v) = (
            layer.q.forward(&x)?,
            layer.k.forward(&x)?,
            layer.v.forward(&x)?,
        );
        if let Some((qb, kb, vb)) = &layer.qkv_bias {
            (q, k, v) = (
                q.broadcast_add(qb)?,
                k.broadcast_add(kb)?,
                v.broadcast_add(vb)?,
            );
        }
        let qkv = (&q, &k, &v);
        let mut out = Vec::with_capacity(spans.len());
        let mut kv = Vec::with_capacity(spans.len());
        for ((span, cached), mask) in spans.iter().zip(cached).zip(masks) {
            let (attended, run_kv) = self.attend(layer, span, qkv, *cached, mask)?;
            out.push(attended);
            kv.push(run_kv);
        }
        Ok((layer.o.forward(&Tensor::cat(&out, 1)?)?, kv))
    }

    /// One run's attention: its rows of the projections, rotated at its positions,
    /// over its prefix's keys and values and its own; (1, len, heads x head_dim).
    fn attend(
        &self,
        layer: &Layer,
        span: &Span,
        (q, k, v): (&Tensor, &Tensor, &Tensor),
        cached: Option<&(Tensor, Tensor)>,
        mask: &Tensor,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let len = span.len;
        let heads = |t: &Tensor, n: usize| -> Result<Tensor> {
            Ok(t.narrow(1, span.start, len)?
                .reshape((1, len, n, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let cos = layer.cos.narrow(0, span.past, len)?;
        let sin = layer.sin.narrow(0, span.past, len)?;
        let rope = |t: Tensor| candle_nn::rotary_emb::rope(&t, &cos, &sin);
        let (mut q, mut k) = (heads(q, self.heads)?, heads(k, self.kv_heads)?);
        if let Some((q_norm, k_norm)) = &layer.qk_norm {
            (q, k) = (q_norm.forward(&q)?, k_norm.forward(&k)?);
        }
        let (q, k) = (rope(q)?, rope(k)?);
        let v = heads(v, self.kv_heads)?;
        let (k, v) = match cached {
            Some((pk, pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
            None => (k, v),
        };
        // The query heads that share a key head are consecutive: as rows of one
        // matrix (groups x len rows a key head) they meet its keys in one product,
        // with no copy of the keys and values for each query head.
        let (groups, seen) = (self.heads / self.kv_heads, span.past + len);
        let q = q.reshape((1, self.kv_heads, groups * len, self.head_dim))?;
        let scores = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?;
        let scores = scores.reshape((1, self.heads, len, seen))?;
        let weights = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(mask)?)?;
        let out = weights
            .reshape((1, self.kv_heads, groups * len, seen))?
            .matmul(&v)?
            .reshape((1, self.heads, len, self.head_dim))?
            .transpose(1, 2)?
            .reshape((1, len, self.heads * self.head_dim))?;
        Ok((out, (k, v)))
    }
}

/// Where a run sits: after `past` positions of its prefix, at rows `start..start + len`
/// of the stacked runs.
struct Span {
    past: usize,
    start: usize,
    len: usize,
}

/// A weight matrix, dequantized at load: where the precision allows and the CPU has
/// AMX or AVX-512 BF16, to bf16 tiles (`empathy_simd::amx`, as the text encoder's),
/// half the bytes to read for every text and more multiplies a cycle; else to f32,
/// packed for AVX2 where the CPU has it (`empathy_simd::panels`).
enum Matrix {
    /// f32 through candle (gemm), on CPUs without AVX2. Not the quantized products:
    /// their 8-bit rounding of activations moved the readings by up to 0.35 nats from
    /// transformers'.
    F32(QMatMul),
    /// W^T in bf16 tiles (multiplied on AMX, else by AVX-512 BF16); inputs are
    /// rounded to bf16, sums stay f32.
    Tiles(tiles::Packed),
    /// W^T in f32 panels packed once, for AVX2: gemm packs W again for every text.
    Panels(panels::Panels),
}

impl Matrix {
    fn new(weights: QTensor, precision: Precision) -> Result<Matrix> {
        let w = weights.dequantize(&Device::Cpu)?;
        let (out, inner) = w.dims2()?;
        let tiles = precision.uses_bf16() && tiles::Packed::fits(inner, out);
        if !tiles && !panels::available() {
            return Ok(Matrix::F32(QMatMul::Tensor(w)));
        }
        let w_t = w.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        Ok(if tiles {
            Matrix::Tiles(tiles::Packed::new(&w_t, inner, out))
        } else {
            Matrix::Panels(panels::Panels::new(&w_t, inner, out))
        })
    }

    /// `x W^T` over `x`'s last dimension.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Matrix::F32(w) => Ok(w.forward(x)?),
            Matrix::Tiles(tiles) => {
                packed_product(x, tiles.shape(), |x, rows| amx::multiply(x, rows, tiles))
            }
            Matrix::Panels(panels) => packed_product(x, panels.shape(), |x, rows| {
                panels::multiply(x, rows, panels)
            }),
        }
    }
}

/// `x W^T` by `multiply` (x's rows, row-major, and how many) with a W^T packed at load
/// of `(inner, out)`.
fn packed_product(
    x: &Tensor,
    (inner, out): (usize, usize),
    multiply: impl Fn(&[f32], usize) -> Vec<f32>,
) -> Result<Tensor> {
    ensure!(
        x.dims().last() == Some(&inner),
        "{:?} into {inner} inputs",
        x.dims()
    );
    let rows = x.elem_count() / inner;
    let y = multiply(&x.flatten_all()?.to_vec1::<f32>()?, rows);
    let mut shape = x.dims().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = out;
    }
    Ok(Tensor::from_vec(y, shape, &Device::Cpu)?)
}

/// gelu(`gate`) x `up`, elementwise, in one pass: GELU in its tanh form, as Gemma's
/// `gelu_pytorch_tanh` and candle's `gelu`, with a vectorised exp (candle's scalar tanh
/// was a tenth of a reading on AVX2).
fn gelu_times(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    ensure!(
        gate.dims() == up.dims(),
        "gate {:?}, up {:?}",
        gate.dims(),
        up.dims()
    );
    let mut gated = gate.flatten_all()?.to_vec1::<f32>()?;
    gelu_times_in_place(&mut gated, &up.flatten_all()?.to_vec1::<f32>()?);
    Ok(Tensor::from_vec(gated, gate.dims(), &Device::Cpu)?)
}

widest! {
    fn gelu_times_in_place(gate: &mut [f32], up: &[f32]) => gelu_times_body
}

#[inline(always)]
fn gelu_times_body(gate: &mut [f32], up: &[f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for (g, u) in gate.iter_mut().zip(up) {
        let x = *g;
        let t = SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x);
        // tanh t = 1 - 2 / (e^2t + 1): -1 and 1 at the ends, where exp clamps.
        let tanh = 1.0 - 2.0 / (exp(2.0 * t) + 1.0);
        *g = 0.5 * x * (1.0 + tanh) * u;
    }
}

/// cos and sin of each position times each rotary frequency.
fn rotary(head_dim: usize, base: f32, device: &Device) -> Result<(Tensor, Tensor)> {
    let freqs: Vec<f32> = (0..head_dim / 2)
        .map(|i| base.powf(-((2 * i) as f32) / head_dim as f32))
        .collect();
    let angles: Vec<f32> = (0..MAX_POSITIONS)
        .flat_map(|p| freqs.iter().map(move |f| p as f32 * f))
        .collect();
    let angles = Tensor::from_vec(angles, (MAX_POSITIONS, head_dim / 2), device)?;
    Ok((angles.cos()?, angles.sin()?))
}

/// (len, past + len): 0 where token i may see position j, minus infinity after it.
fn causal_mask(past: usize, len: usize) -> Result<Tensor> {
    let mask: Vec<f32> = (0..len)
        .flat_map(|i| {
            (0..past + len).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (len, past + len), &Device::Cpu)?)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::{causal_mask, gelu_times};

    #[test]
    fn gelu_times_is_candle_s_gelu_times_up() {
        let gate: Vec<f32> = (-1200..=1200).map(|i| i as f32 / 100.0).collect();
        let up: Vec<f32> = gate.iter().map(|g| 1.5 - g.sin()).collect();
        let (gate, up) = (
            Tensor::new(gate, &Device::Cpu).unwrap(),
            Tensor::new(up, &Device::Cpu).unwrap(),
        );
        let want = (gate.gelu().unwrap() * &up).unwrap();
        let got = gelu_times(&gate, &up).unwrap();
        let worst = (want - got).unwrap().abs().unwrap().max(0).unwrap();
        assert!(worst.to_scalar::<f32>().unwrap() < 1e-5, "{worst}");
    }

    #[test]
    fn a_token_sees_the_prefix_and_what_came_before_it() {
        let mask = causal_mask(2, 2).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(mask[0], [0.0, 0.0, 0.0, f32::NEG_INFINITY]);
        assert_eq!(mask[1], [0.0, 0.0, 0.0, 0.0]);
    }
}
