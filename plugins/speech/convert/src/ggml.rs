//! The whisper.cpp ggml file: magic, hyper-parameters, mel filters, vocabulary, then
//! tensors, as whisper.cpp's models/convert-pt-to-ggml.py writes it and
//! `whisper_model_load` in src/whisper.cpp reads it.

use std::io::Write;
use std::ops::Range;

use anyhow::{Context, bail, ensure};
use half::f16;

use crate::ctranslate2::{DType, Model, Variable};
use crate::whisper_assets::MelFilters;

const MAGIC: u32 = 0x6767_6d6c; // "ggml"
/// ftype 1: matrices in float16, vectors in float32 (the script's default).
const FTYPE_F16: i32 = 1;

/// The hyper-parameters in the ggml header, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HParams {
    pub n_vocab: usize,
    pub n_audio_ctx: usize,
    pub n_audio_state: usize,
    pub n_audio_head: usize,
    pub n_audio_layer: usize,
    pub n_text_ctx: usize,
    pub n_text_state: usize,
    pub n_text_head: usize,
    pub n_text_layer: usize,
    pub n_mels: usize,
}

impl HParams {
    pub fn from_model(model: &Model, buf: &[u8]) -> anyhow::Result<Self> {
        let dims = |name: &str| model.get(name).map(|v| v.shape.clone());
        let [n_vocab, n_text_state] = dims("decoder/embeddings/weight")?[..] else {
            bail!("decoder/embeddings/weight is not a matrix");
        };
        let [n_audio_ctx, n_audio_state] = dims("encoder/position_encodings/encodings")?[..] else {
            bail!("encoder/position_encodings/encodings is not a matrix");
        };
        let [n_text_ctx, _] = dims("decoder/position_encodings/encodings")?[..] else {
            bail!("decoder/position_encodings/encodings is not a matrix");
        };
        let [_, n_mels, _] = dims("encoder/conv1/weight")?[..] else {
            bail!("encoder/conv1/weight is not a 3-D convolution kernel");
        };
        Ok(Self {
            n_vocab,
            n_audio_ctx,
            n_audio_state,
            n_audio_head: heads(model, buf, "encoder", n_audio_state)?,
            n_audio_layer: layers(model, "encoder"),
            n_text_ctx,
            n_text_state,
            n_text_head: heads(model, buf, "decoder", n_text_state)?,
            n_text_layer: layers(model, "decoder"),
            n_mels,
        })
    }

    /// whisper.cpp's rule: the multilingual vocabulary has 51865 or more tokens.
    pub fn is_multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }
}

/// `<side>/num_heads` (int16) when the converter stored it; else Whisper's fixed head size of 64.
fn heads(model: &Model, buf: &[u8], side: &str, state: usize) -> anyhow::Result<usize> {
    match model.variables.get(&format!("{side}/num_heads")) {
        Some(v) if v.dtype == DType::I16 && v.elements() == 1 => {
            let b = &buf[v.bytes.clone()];
            Ok(i16::from_le_bytes([b[0], b[1]]) as usize)
        }
        Some(v) => bail!("{side}/num_heads has an unexpected type {:?}", v.dtype),
        None => Ok(state / 64),
    }
}

fn layers(model: &Model, side: &str) -> usize {
    (0..)
        .take_while(|i| {
            model
                .variables
                .contains_key(&format!("{side}/layer_{i}/ffn/linear_0/weight"))
        })
        .count()
}

/// One ggml tensor: rows of a CTranslate2 variable (fused projections are split by rows).
struct Tensor<'m> {
    name: String,
    var: &'m Variable,
    rows: Range<usize>,
    /// PyTorch order; ggml stores it reversed.
    shape: Vec<usize>,
    float32: bool,
}

struct Plan<'m> {
    model: &'m Model,
    tensors: Vec<Tensor<'m>>,
}

impl<'m> Plan<'m> {
    /// A whole variable. Vectors, conv biases and positional embeddings stay float32,
    /// as the reference script keeps them (whisper.cpp allocates them so).
    fn whole(&mut self, name: String, from: &str) -> anyhow::Result<()> {
        let rows = self.model.get(from)?.shape.first().copied().unwrap_or(1);
        self.part(name, from, 0..rows)
    }

    fn part(&mut self, name: String, from: &str, rows: Range<usize>) -> anyhow::Result<()> {
        let var = self.model.get(from)?;
        ensure!(
            matches!(var.dtype, DType::F16 | DType::F32),
            "{from} is {:?}: only float16 and float32 models can be converted (not quantized ones)",
            var.dtype
        );
        let total = var.shape.first().copied().unwrap_or(1);
        ensure!(
            rows.end <= total,
            "{from} has {total} rows, cannot take {rows:?}"
        );
        let mut shape = var.shape.clone();
        if let Some(first) = shape.first_mut() {
            *first = rows.len();
        }
        let conv_bias = name.starts_with("encoder.conv") && name.ends_with(".bias");
        if conv_bias {
            shape.push(1);
        }
        let float32 = var.shape.len() < 2 || conv_bias || name.ends_with("positional_embedding");
        self.tensors.push(Tensor {
            name,
            var,
            rows,
            shape,
            float32,
        });
        Ok(())
    }

    fn linear(&mut self, to: &str, from: &str) -> anyhow::Result<()> {
        self.whole(format!("{to}.weight"), &format!("{from}/weight"))?;
        self.whole(format!("{to}.bias"), &format!("{from}/bias"))
    }

    fn layer_norm(&mut self, to: &str, from: &str) -> anyhow::Result<()> {
        self.whole(format!("{to}.weight"), &format!("{from}/gamma"))?;
        self.whole(format!("{to}.bias"), &format!("{from}/beta"))
    }

    /// A block's self-attention: its layer norm, the fused q/k/v, the output projection.
    fn self_attention(&mut self, to: &str, from: &str, n: usize, buf: &[u8]) -> anyhow::Result<()> {
        self.layer_norm(
            &format!("{to}.attn_ln"),
            &format!("{from}/self_attention/layer_norm"),
        )?;
        self.split(
            &format!("{to}.attn"),
            &["query", "key", "value"],
            &format!("{from}/self_attention/linear_0"),
            n,
            buf,
        )?;
        self.linear(
            &format!("{to}.attn.out"),
            &format!("{from}/self_attention/linear_1"),
        )
    }

    /// A block's feed-forward part: its layer norm and two linear layers.
    fn mlp(&mut self, to: &str, from: &str) -> anyhow::Result<()> {
        self.layer_norm(&format!("{to}.mlp_ln"), &format!("{from}/ffn/layer_norm"))?;
        self.linear(&format!("{to}.mlp.0"), &format!("{from}/ffn/linear_0"))?;
        self.linear(&format!("{to}.mlp.2"), &format!("{from}/ffn/linear_1"))
    }

    /// Splits a fused projection into `names` of `n` rows each. Whisper's key projection
    /// has no bias: CTranslate2 filled zeros there, which are checked and dropped.
    fn split(
        &mut self,
        to: &str,
        names: &[&str],
        from: &str,
        n: usize,
        buf: &[u8],
    ) -> anyhow::Result<()> {
        let bias = format!("{from}/bias");
        for (i, part) in names.iter().enumerate() {
            let rows = i * n..(i + 1) * n;
            self.part(
                format!("{to}.{part}.weight"),
                &format!("{from}/weight"),
                rows.clone(),
            )?;
            if *part == "key" {
                let var = self.model.get(&bias)?;
                let size = var.dtype.size();
                let bytes =
                    &buf[var.bytes.start + rows.start * size..var.bytes.start + rows.end * size];
                ensure!(
                    bytes.iter().all(|&b| b == 0),
                    "{bias}: the key bias is not zero"
                );
            } else {
                self.part(format!("{to}.{part}.bias"), &bias, rows)?;
            }
        }
        Ok(())
    }
}

/// The tensors whisper.cpp expects, named as in OpenAI's checkpoint, taken from the
/// variables of CTranslate2's WhisperSpec.
fn plan<'m>(model: &'m Model, h: &HParams, buf: &[u8]) -> anyhow::Result<Vec<Tensor<'m>>> {
    let mut p = Plan {
        model,
        tensors: Vec::new(),
    };
    p.linear("encoder.conv1", "encoder/conv1")?;
    p.linear("encoder.conv2", "encoder/conv2")?;
    p.whole(
        "encoder.positional_embedding".into(),
        "encoder/position_encodings/encodings",
    )?;
    for i in 0..h.n_audio_layer {
        let (to, from) = (format!("encoder.blocks.{i}"), format!("encoder/layer_{i}"));
        p.self_attention(&to, &from, h.n_audio_state, buf)?;
        p.mlp(&to, &from)?;
    }
    p.layer_norm("encoder.ln_post", "encoder/layer_norm")?;

    p.whole(
        "decoder.token_embedding.weight".into(),
        "decoder/embeddings/weight",
    )?;
    p.whole(
        "decoder.positional_embedding".into(),
        "decoder/position_encodings/encodings",
    )?;
    for i in 0..h.n_text_layer {
        let (to, from) = (format!("decoder.blocks.{i}"), format!("decoder/layer_{i}"));
        p.self_attention(&to, &from, h.n_text_state, buf)?;
        p.layer_norm(
            &format!("{to}.cross_attn_ln"),
            &format!("{from}/attention/layer_norm"),
        )?;
        p.linear(
            &format!("{to}.cross_attn.query"),
            &format!("{from}/attention/linear_0"),
        )?;
        p.split(
            &format!("{to}.cross_attn"),
            &["key", "value"],
            &format!("{from}/attention/linear_1"),
            h.n_text_state,
            buf,
        )?;
        p.linear(
            &format!("{to}.cross_attn.out"),
            &format!("{from}/attention/linear_2"),
        )?;
        p.mlp(&to, &from)?;
    }
    p.layer_norm("decoder.ln", "decoder/layer_norm")?;
    Ok(p.tensors)
}

fn i32_of(n: usize) -> anyhow::Result<[u8; 4]> {
    Ok(i32::try_from(n)
        .context("a size does not fit the ggml header")?
        .to_le_bytes())
}

/// Writes the ggml file; returns the number of tensors written.
pub fn write(
    out: &mut impl Write,
    model: &Model,
    buf: &[u8],
    h: &HParams,
    filters: &MelFilters,
    vocab: &[Vec<u8>],
) -> anyhow::Result<usize> {
    let tensors = plan(model, h, buf)?;
    out.write_all(&MAGIC.to_le_bytes())?;
    for n in [
        h.n_vocab,
        h.n_audio_ctx,
        h.n_audio_state,
        h.n_audio_head,
        h.n_audio_layer,
        h.n_text_ctx,
        h.n_text_state,
        h.n_text_head,
        h.n_text_layer,
        h.n_mels,
    ] {
        out.write_all(&i32_of(n)?)?;
    }
    out.write_all(&FTYPE_F16.to_le_bytes())?;

    out.write_all(&i32_of(filters.n_mel)?)?;
    out.write_all(&i32_of(filters.n_fft)?)?;
    for v in &filters.data {
        out.write_all(&v.to_le_bytes())?;
    }

    out.write_all(&i32_of(vocab.len())?)?;
    for token in vocab {
        out.write_all(&i32_of(token.len())?)?;
        out.write_all(token)?;
    }

    for t in &tensors {
        let ftype: i32 = if t.float32 { 0 } else { 1 };
        out.write_all(&i32_of(t.shape.len())?)?;
        out.write_all(&i32_of(t.name.len())?)?;
        out.write_all(&ftype.to_le_bytes())?;
        for d in t.shape.iter().rev() {
            out.write_all(&i32_of(*d)?)?;
        }
        out.write_all(t.name.as_bytes())?;
        write_data(out, t, buf)?;
    }
    Ok(tensors.len())
}

fn write_data(out: &mut impl Write, t: &Tensor, buf: &[u8]) -> anyhow::Result<()> {
    let var = t.var;
    let size = var.dtype.size();
    let row = var.elements() / var.shape.first().copied().unwrap_or(1).max(1) * size;
    let bytes = &buf[var.bytes.start + t.rows.start * row..var.bytes.start + t.rows.end * row];
    let mut converted = Vec::with_capacity(bytes.len() * 2);
    match (var.dtype, t.float32) {
        (DType::F16, false) | (DType::F32, true) => converted.extend_from_slice(bytes),
        (DType::F16, true) => {
            for c in bytes.chunks_exact(2) {
                converted.extend(f16::from_le_bytes([c[0], c[1]]).to_f32().to_le_bytes());
            }
        }
        (DType::F32, false) => {
            for c in bytes.chunks_exact(4) {
                let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                converted.extend(f16::from_f32(v).to_le_bytes());
            }
        }
        (other, _) => bail!("{}: cannot convert {other:?}", t.name),
    }
    out.write_all(&converted)?;
    Ok(())
}
