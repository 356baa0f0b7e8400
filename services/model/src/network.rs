//! The fusion network: every present modality token is projected to a common width
//! and tagged with a learned modality-type embedding; one learned query attends over
//! the present tokens only; the pooled vector feeds the sentiment, emotion and
//! valence/arousal heads. The attention weights are the modality attributions.
//!
//! Previous turns of a conversation are tokens too: each turn's text embedding,
//! projected, tagged with who said it (the person analysed or the other side) and how
//! many turns back it was, so the same words after different turns can mean otherwise.
//! How much the turns before may weigh is read off the analysed turn itself (its text
//! and lexicon tokens): "Great." leans on them, "I am furious" does not. A single
//! learned query could not learn that: it scores every token on its own.

use candle_core::{D, DType, Device, Module, Shape, Tensor, Var};
use candle_nn::{Linear, VarBuilder, VarMap, linear};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Modality slots, in token order; situations take the slots after these.
pub const MODALITIES: [&str; 4] = ["text", "lexicon", "speech", "image"];
pub const TEXT: usize = 0;
pub const LEXICON: usize = 1;
pub const SPEECH: usize = 2;
pub const IMAGE: usize = 3;
const SITUATION_TYPE: usize = 4;

/// Input widths and the model width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dims {
    pub text: usize,
    pub lexicon: usize,
    /// Placeholders until the speech and image issues fix their token widths.
    pub speech: usize,
    pub image: usize,
    /// Situations are encoded by the text encoder.
    pub situation: usize,
    pub max_situations: usize,
    /// Previous turns read as tokens (text embeddings of width `text`), the most
    /// recent ones; 0 for versions trained before conversations.
    #[serde(default)]
    pub max_context: usize,
    pub d_model: usize,
}

impl Default for Dims {
    fn default() -> Self {
        Dims {
            text: 384,
            lexicon: crate::LEXICON_FEATURES,
            speech: 32,
            image: 32,
            situation: 384,
            max_situations: 4,
            max_context: 4,
            d_model: 96,
        }
    }
}

impl Dims {
    /// Tokens per example: the four modalities, the situation slots, then the
    /// context slots (the most recent turn first).
    pub fn tokens(&self) -> usize {
        MODALITIES.len() + self.max_situations + self.max_context
    }

    /// The token slot of the context turn `back` turns before the analysed one (0 =
    /// the turn just before).
    pub fn context_slot(&self, back: usize) -> usize {
        MODALITIES.len() + self.max_situations + back
    }
}

/// One batch of inputs as tensors; absent inputs are zeros with mask 0.
pub struct TokenBatch {
    pub text: Tensor,
    pub lexicon: Tensor,
    pub speech: Tensor,
    pub image: Tensor,
    /// [batch, max_situations, situation]
    pub situations: Tensor,
    /// [batch, max_context, text], the turn just before first.
    pub context: Tensor,
    /// [batch, max_context, 2]: one-hot speaker of each context turn (the person
    /// analysed, the other side); zeros where absent.
    pub context_speaker: Tensor,
    /// [batch, tokens], 1.0 where the token is present. Every row needs one.
    pub mask: Tensor,
}

pub struct NetworkOutput {
    pub sentiment_logits: Tensor,
    pub emotion_logits: Tensor,
    /// [batch, 2]: valence and arousal, tanh'd.
    pub affect: Tensor,
    /// [batch, tokens], zero on absent tokens, each row sums to one.
    pub attention: Tensor,
}

pub struct FusionNetwork {
    dims: Dims,
    projections: [Linear; 5],
    types: Tensor,
    context: Option<ContextTokens>,
    norm_weight: Tensor,
    norm_bias: Tensor,
    query: Tensor,
    key: Linear,
    value: Linear,
    hidden: Linear,
    sentiment: Linear,
    emotion: Linear,
    affect: Linear,
}

/// What turns a previous turn into a token: its projection, a type per speaker and
/// an embedding per distance back; and the gate, which shifts the attention scores of
/// all previous turns by how much the analysed turn needs them.
struct ContextTokens {
    projection: Linear,
    speakers: Tensor,
    recency: Tensor,
    gate: Linear,
}

impl ContextTokens {
    fn new(dims: &Dims, vb: VarBuilder) -> candle_core::Result<ContextTokens> {
        let init = candle_nn::Init::Const(0.0);
        Ok(ContextTokens {
            projection: linear(dims.text, dims.d_model, vb.pp("proj"))?,
            speakers: vb.get_with_hints((2, dims.d_model), "speakers", init)?,
            recency: vb.get_with_hints((dims.max_context, dims.d_model), "recency", init)?,
            gate: linear(2 * dims.d_model, 1, vb.pp("gate"))?,
        })
    }

    /// [batch, tokens]: zero on every token but the previous turns, which all get the
    /// gate read off the analysed turn's normed text and lexicon tokens.
    fn score_shift(&self, tokens: &Tensor, dims: &Dims) -> candle_core::Result<Tensor> {
        let b = tokens.dim(0)?;
        let analysed = tokens.narrow(1, TEXT, 2)?.reshape((b, 2 * dims.d_model))?;
        let gate = self.gate.forward(&analysed)?;
        let others = Tensor::zeros(
            (b, dims.tokens() - dims.max_context),
            DType::F32,
            tokens.device(),
        )?;
        Tensor::cat(
            &[
                others,
                gate.broadcast_as((b, dims.max_context))?.contiguous()?,
            ],
            1,
        )
    }

    /// [batch, max_context, d_model]
    fn forward(&self, batch: &TokenBatch, dims: &Dims) -> candle_core::Result<Tensor> {
        let (b, n) = (batch.context.dim(0)?, dims.max_context);
        let flat = batch.context.reshape((b * n, dims.text))?;
        let projected = self
            .projection
            .forward(&flat)?
            .reshape((b, n, dims.d_model))?;
        let speaker = batch.context_speaker.broadcast_matmul(&self.speakers)?;
        (projected + speaker)?.broadcast_add(&self.recency)
    }
}

impl FusionNetwork {
    /// Builds the network from `vb`: from a `VarMap` to train, from safetensors to serve
    /// (then every tensor's shape is checked against `dims`).
    pub fn new(dims: Dims, vb: VarBuilder) -> candle_core::Result<FusionNetwork> {
        let d = dims.d_model;
        let p = vb.pp("proj");
        let projections = [
            linear(dims.text, d, p.pp("text"))?,
            linear(dims.lexicon, d, p.pp("lexicon"))?,
            linear(dims.speech, d, p.pp("speech"))?,
            linear(dims.image, d, p.pp("image"))?,
            linear(dims.situation, d, p.pp("situation"))?,
        ];
        let init = candle_nn::Init::Const(0.0);
        Ok(FusionNetwork {
            dims,
            projections,
            types: vb.get_with_hints((SITUATION_TYPE + 1, d), "types", init)?,
            context: (dims.max_context > 0)
                .then(|| ContextTokens::new(&dims, vb.pp("context")))
                .transpose()?,
            norm_weight: vb.get_with_hints(d, "norm.weight", candle_nn::Init::Const(1.0))?,
            norm_bias: vb.get_with_hints(d, "norm.bias", init)?,
            query: vb.get_with_hints((d, 1), "query", init)?,
            key: linear(d, d, vb.pp("key"))?,
            value: linear(d, d, vb.pp("value"))?,
            hidden: linear(d, d, vb.pp("hidden"))?,
            sentiment: linear(d, 3, vb.pp("head.sentiment"))?,
            emotion: linear(d, 7, vb.pp("head.emotion"))?,
            affect: linear(d, 2, vb.pp("head.affect"))?,
        })
    }

    pub fn dims(&self) -> &Dims {
        &self.dims
    }

    pub fn forward(&self, batch: &TokenBatch) -> candle_core::Result<NetworkOutput> {
        self.forward_with_dropout(batch, None)
    }

    /// `hidden_mask` (training only): [batch, d_model], already scaled by 1/(1-p).
    pub fn forward_with_dropout(
        &self,
        batch: &TokenBatch,
        hidden_mask: Option<&Tensor>,
    ) -> candle_core::Result<NetworkOutput> {
        let d = self.dims.d_model;
        let b = batch.text.dim(0)?;
        let token = |slot: usize, x: &Tensor| -> candle_core::Result<Tensor> {
            self.projections[slot]
                .forward(x)?
                .broadcast_add(&self.types.get(slot)?)
        };
        let modalities = Tensor::stack(
            &[
                token(TEXT, &batch.text)?,
                token(LEXICON, &batch.lexicon)?,
                token(SPEECH, &batch.speech)?,
                token(IMAGE, &batch.image)?,
            ],
            1,
        )?;
        let n = self.dims.max_situations;
        let mut parts = vec![modalities];
        if n > 0 {
            let flat = batch.situations.reshape((b * n, self.dims.situation))?;
            parts.push(token(SITUATION_TYPE, &flat)?.reshape((b, n, d))?);
        }
        if let Some(context) = &self.context {
            parts.push(context.forward(batch, &self.dims)?);
        }
        let tokens = Tensor::cat(&parts, 1)?;
        let tokens = layer_norm(&tokens, &self.norm_weight, &self.norm_bias)?;
        let scores = self
            .key
            .forward(&tokens)?
            .broadcast_matmul(&self.query)?
            .squeeze(2)?;
        let mut scores = (scores / (d as f64).sqrt())?;
        if let Some(context) = &self.context {
            scores = (scores + context.score_shift(&tokens, &self.dims)?)?;
        }
        // Absent tokens get -1e9 before the softmax, hence exactly zero weight.
        let scores = (scores + ((&batch.mask - 1.0)? * 1e9)?)?;
        let attention = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let pooled = attention
            .unsqueeze(1)?
            .matmul(&self.value.forward(&tokens)?)?
            .squeeze(1)?;
        let mut hidden = self.hidden.forward(&pooled)?.gelu()?;
        if let Some(mask) = hidden_mask {
            hidden = (hidden * mask)?;
        }
        Ok(NetworkOutput {
            sentiment_logits: self.sentiment.forward(&hidden)?,
            // The emotion head reads the shared representation without shaping it:
            // emotion corrections cannot move the sentiment a version was tested on.
            emotion_logits: self.emotion.forward(&hidden.detach())?,
            affect: self.affect.forward(&hidden)?.tanh()?,
            attention,
        })
    }
}

/// candle-nn's fused layer norm has no backward pass; this one is plain ops.
fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred
        .broadcast_div(&(var + 1e-5)?.sqrt()?)?
        .broadcast_mul(weight)?
        .broadcast_add(bias)
}

/// A network with fresh weights drawn from `rng` (candle's CPU RNG cannot be seeded):
/// linear weights uniform in +-1/sqrt(fan_in), type embeddings and the query small,
/// biases zero, layer norm identity.
pub fn init_network(
    dims: Dims,
    rng: &mut impl Rng,
) -> candle_core::Result<(VarMap, FusionNetwork)> {
    let varmap = VarMap::new();
    let network = FusionNetwork::new(
        dims,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )?;
    let mut vars: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("VarMap lock poisoned".into()))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, var) in vars {
        let shape = var.shape().clone();
        // Every variable is set here: candle-nn's own init draws unseeded biases.
        let tensor = match (shape.dims(), name.as_str()) {
            ([_, fan_in], n) if n.ends_with(".weight") => {
                uniform(rng, &shape, 1.0 / (*fan_in as f32).sqrt())?
            }
            (_, "types" | "context.speakers" | "context.recency") => uniform(rng, &shape, 0.1)?,
            (_, "query") => uniform(rng, &shape, 1.0 / (dims.d_model as f32).sqrt())?,
            (_, "norm.weight") => Tensor::ones(&shape, DType::F32, &Device::Cpu)?,
            _ => Tensor::zeros(&shape, DType::F32, &Device::Cpu)?,
        };
        var.set(&tensor)?;
    }
    Ok((varmap, network))
}

fn uniform(rng: &mut impl Rng, shape: &Shape, bound: f32) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = (0..shape.elem_count())
        .map(|_| rng.random_range(-bound..bound))
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn batch(dims: &Dims, mask: &[f32], absent_value: f32) -> candle_core::Result<TokenBatch> {
        let b = mask.len() / dims.tokens();
        let filled = |w: usize, v: f32| Tensor::full(v, (b, w), &Device::Cpu);
        Ok(TokenBatch {
            text: filled(dims.text, 0.3)?,
            lexicon: filled(dims.lexicon, -0.2)?,
            // Speech and situations are absent (mask 0): their values must not matter.
            speech: filled(dims.speech, absent_value)?,
            image: filled(dims.image, 0.5)?,
            situations: Tensor::full(
                absent_value,
                (b, dims.max_situations, dims.situation),
                &Device::Cpu,
            )?,
            context: Tensor::full(0.7f32, (b, dims.max_context, dims.text), &Device::Cpu)?,
            context_speaker: Tensor::full(0.5f32, (b, dims.max_context, 2), &Device::Cpu)?,
            mask: Tensor::from_vec(mask.to_vec(), (b, dims.tokens()), &Device::Cpu)?,
        })
    }

    #[test]
    fn attention_masks_absent_tokens() -> candle_core::Result<()> {
        let dims = Dims {
            text: 6,
            lexicon: 5,
            speech: 4,
            image: 3,
            situation: 6,
            max_situations: 2,
            max_context: 1,
            d_model: 8,
        };
        let (_, network) = init_network(dims, &mut StdRng::seed_from_u64(3))?;
        let mask = [
            1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, // a previous turn
            0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        ];
        let a = network.forward(&batch(&dims, &mask, 0.0)?)?;
        let b = network.forward(&batch(&dims, &mask, 1e3)?)?;
        let attention = a.attention.to_vec2::<f32>()?;
        for (row, mask) in attention.iter().zip(mask.chunks(dims.tokens())) {
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "attention sums to {sum}");
            for (w, m) in row.iter().zip(mask) {
                assert_eq!(*m == 0.0, *w == 0.0, "weight {w} on a token with mask {m}");
            }
        }
        assert_eq!(attention, b.attention.to_vec2::<f32>()?);
        assert_eq!(
            a.sentiment_logits.to_vec2::<f32>()?,
            b.sentiment_logits.to_vec2::<f32>()?,
            "absent inputs changed the output"
        );
        Ok(())
    }

    #[test]
    fn the_gate_moves_weight_between_the_turns_before_and_the_rest() -> candle_core::Result<()> {
        let dims = Dims {
            max_context: 2,
            ..Dims::default()
        };
        let (varmap, network) = init_network(dims, &mut StdRng::seed_from_u64(5))?;
        let mask = vec![1.0; dims.tokens()];
        let attention = |bias: f32| -> candle_core::Result<Vec<f32>> {
            let data = varmap
                .data()
                .lock()
                .map_err(|_| candle_core::Error::Msg("poisoned".into()))?;
            data["context.gate.bias"].set(&Tensor::new(&[bias], &Device::Cpu)?)?;
            drop(data);
            let out = network.forward(&batch(&dims, &mask, 0.0)?)?;
            Ok(out.attention.to_vec2::<f32>()?.remove(0))
        };
        let context = |a: &[f32]| a[dims.context_slot(0)..].iter().sum::<f32>();
        let (closed, open) = (attention(-30.0)?, attention(30.0)?);
        assert!(context(&closed) < 1e-6, "{closed:?}");
        assert!(context(&open) > 1.0 - 1e-6, "{open:?}");
        // The other tokens keep their proportions to each other.
        let middle = attention(0.0)?;
        let ratio = |a: &[f32]| a[TEXT] / a[LEXICON];
        assert!((ratio(&closed) - ratio(&middle)).abs() < 1e-4);
        Ok(())
    }

    #[test]
    fn seeded_init_is_deterministic() -> candle_core::Result<()> {
        let dims = Dims::default();
        let weights = |seed| -> candle_core::Result<Vec<(String, Vec<f32>)>> {
            let (varmap, _) = init_network(dims, &mut StdRng::seed_from_u64(seed))?;
            let data = varmap
                .data()
                .lock()
                .map_err(|_| candle_core::Error::Msg("poisoned".into()))?;
            let mut all = data
                .iter()
                .map(|(k, v)| Ok((k.clone(), v.flatten_all()?.to_vec1::<f32>()?)))
                .collect::<candle_core::Result<Vec<_>>>()?;
            all.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(all)
        };
        assert_eq!(weights(1)?, weights(1)?);
        assert_ne!(weights(1)?, weights(2)?);
        Ok(())
    }
}
