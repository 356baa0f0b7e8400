//! Packs examples into the fixed token layout of `FusionNetwork`: absent inputs are
//! zeros with mask 0.

use candle_core::{Device, Tensor};

use crate::network::{Dims, MODALITIES, TokenBatch};

pub struct BatchBuilder {
    dims: Dims,
    rows: usize,
    text: Vec<f32>,
    lexicon: Vec<f32>,
    speech: Vec<f32>,
    image: Vec<f32>,
    situations: Vec<f32>,
    context: Vec<f32>,
    context_speaker: Vec<f32>,
    mask: Vec<f32>,
}

/// Who said a previous turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// The person analysed.
    User,
    /// The other side: an agent, an assistant, a friend.
    Other,
}

/// A previous turn as the network reads it: its text embedding and its speaker.
#[derive(Debug, Clone, Copy)]
pub struct ContextTurn<'a> {
    pub embedding: &'a [f32],
    pub speaker: Speaker,
}

/// One example's inputs; widths must match `Dims` (the caller checks).
pub struct Example<'a> {
    pub text: Option<&'a [f32]>,
    pub lexicon: &'a [f32],
    pub speech: Option<&'a [f32]>,
    pub image: Option<&'a [f32]>,
    pub situations: &'a [Vec<f32>],
    /// Previous turns, oldest first; the network reads the most recent `max_context`.
    pub context: Vec<ContextTurn<'a>>,
}

impl BatchBuilder {
    pub fn new(dims: Dims) -> BatchBuilder {
        BatchBuilder {
            dims,
            rows: 0,
            text: Vec::new(),
            lexicon: Vec::new(),
            speech: Vec::new(),
            image: Vec::new(),
            situations: Vec::new(),
            context: Vec::new(),
            context_speaker: Vec::new(),
            mask: Vec::new(),
        }
    }

    /// Adds a row; `use_token[slot]` masks a present input out (an untrained modality,
    /// or modality dropout in training).
    pub fn push(&mut self, example: &Example, use_token: impl Fn(usize) -> bool) {
        let dims = self.dims;
        let slot =
            |out: &mut Vec<f32>, input: Option<&[f32]>, width: usize, index: usize| match input
                .filter(|_| use_token(index))
            {
                Some(values) => {
                    out.extend_from_slice(values);
                    1.0
                }
                None => {
                    out.resize(out.len() + width, 0.0);
                    0.0
                }
            };
        let mut mask = vec![
            slot(&mut self.text, example.text, dims.text, 0),
            slot(&mut self.lexicon, Some(example.lexicon), dims.lexicon, 1),
            slot(&mut self.speech, example.speech, dims.speech, 2),
            slot(&mut self.image, example.image, dims.image, 3),
        ];
        for i in 0..dims.max_situations {
            let input = example.situations.get(i).map(Vec::as_slice);
            mask.push(slot(
                &mut self.situations,
                input,
                dims.situation,
                MODALITIES.len() + i,
            ));
        }
        for back in 0..dims.max_context {
            let turn = example.context.iter().rev().nth(back);
            let used = turn.filter(|_| use_token(dims.context_slot(back)));
            let speaker = match used.map(|t| t.speaker) {
                Some(Speaker::User) => [1.0, 0.0],
                Some(Speaker::Other) => [0.0, 1.0],
                None => [0.0, 0.0],
            };
            self.context_speaker.extend(speaker);
            mask.push(slot(
                &mut self.context,
                used.map(|t| t.embedding),
                dims.text,
                dims.context_slot(back),
            ));
        }
        self.mask.extend(mask);
        self.rows += 1;
    }

    pub fn build(self) -> candle_core::Result<TokenBatch> {
        let d = self.dims;
        let b = self.rows;
        let tensor = |v: Vec<f32>, w: usize| Tensor::from_vec(v, (b, w), &Device::Cpu);
        Ok(TokenBatch {
            text: tensor(self.text, d.text)?,
            lexicon: tensor(self.lexicon, d.lexicon)?,
            speech: tensor(self.speech, d.speech)?,
            image: tensor(self.image, d.image)?,
            situations: Tensor::from_vec(
                self.situations,
                (b, d.max_situations, d.situation),
                &Device::Cpu,
            )?,
            context: Tensor::from_vec(self.context, (b, d.max_context, d.text), &Device::Cpu)?,
            context_speaker: Tensor::from_vec(
                self.context_speaker,
                (b, d.max_context, 2),
                &Device::Cpu,
            )?,
            mask: tensor(self.mask, d.tokens())?,
        })
    }
}
