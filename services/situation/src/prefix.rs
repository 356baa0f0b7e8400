//! A text prefilled once and continued many times: each situation of a request is
//! scored (PMI) and read (its emotion) after the same words about the utterance, and
//! running those words through the model again for every situation was most of the
//! time an answer took.

use anyhow::Result;
use candle_core::Tensor;

use crate::llama::{Model, SeqCache};

pub struct CachedPrefix {
    ids: Vec<u32>,
    cache: SeqCache,
}

impl CachedPrefix {
    /// `ids` run through `model` once.
    pub fn new(model: &Model, ids: Vec<u32>) -> Result<Self> {
        let mut cache = model.new_cache(ids.len());
        if !ids.is_empty() {
            model.prefill(&ids, &mut cache)?;
        }
        Ok(Self { ids, cache })
    }

    /// No prefix: every text runs whole.
    pub fn none(model: &Model) -> Self {
        Self {
            ids: Vec::new(),
            cache: model.new_cache(0),
        }
    }

    /// A cache holding the longest start that `ids` shares with this prefix (never all
    /// of `ids`: its last token must run to predict what follows), with room for
    /// `more` tokens after `ids`; and the ids still to run.
    fn fork<'a>(
        &self,
        model: &Model,
        ids: &'a [u32],
        more: usize,
    ) -> Result<(SeqCache, &'a [u32])> {
        let shared = self
            .ids
            .iter()
            .zip(ids)
            .take_while(|(a, b)| a == b)
            .count()
            .min(ids.len().saturating_sub(1));
        let cache = model.fork_cache_first(&self.cache, shared, ids.len() + more)?;
        Ok((cache, &ids[shared..]))
    }

    /// log p(`target` | `ids`) under `model`, running only what this prefix lacks.
    pub fn log_likelihood(&self, model: &Model, ids: &[u32], target: &[u32]) -> Result<f32> {
        let (cache, rest) = self.fork(model, ids, target.len())?;
        model.log_likelihood_in(cache, rest, target)
    }

    /// The logits after `ids`, shape (vocab,), running only what this prefix lacks.
    pub fn next_logits(&self, model: &Model, ids: &[u32]) -> Result<Tensor> {
        let (mut cache, rest) = self.fork(model, ids, 0)?;
        model.prefill(rest, &mut cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        feeling::FeelingReader,
        llama::WeightFormat,
        pmi::{Direction, NEUTRAL_CONTEXT, pmi, pmi_after, situation_context},
        tokenizer::GgufTokenizer,
    };

    /// The engine's prefilled contexts give the scores and readings of running every
    /// text whole.
    #[test]
    fn prefilled_contexts_change_no_score() {
        let path = crate::tokenizer::tests::gguf_path();
        let mut f = std::fs::File::open(path).expect("run `empathy assets fetch`");
        let ct = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
        let tok = GgufTokenizer::from_gguf(&ct).unwrap();
        let model =
            Model::from_gguf(&ct, &mut f, &candle_core::Device::Cpu, WeightFormat::Q4).unwrap();
        let utterance = "The package arrived broken.";
        let situation = "A woman waited two weeks for a lamp and found it smashed in its box.";
        let with =
            CachedPrefix::new(&model, tok.encode(&situation_context(utterance)).unwrap()).unwrap();
        let without = CachedPrefix::new(&model, tok.encode(NEUTRAL_CONTEXT).unwrap()).unwrap();
        let dir = Direction::SituationGivenUtterance;
        let whole = pmi(&model, &tok, utterance, situation, dir).unwrap();
        let cached = pmi_after(&model, &tok, [&with, &without], utterance, situation, dir).unwrap();
        assert!((whole - cached).abs() < 1e-3, "{whole} vs {cached}");

        let reader = FeelingReader::new(&model, &tok).unwrap();
        let none = CachedPrefix::none(&model);
        let whole = reader
            .read(&model, &tok, &none, utterance, situation)
            .unwrap();
        let cached = reader
            .read(&model, &tok, &with, utterance, situation)
            .unwrap();
        for (a, b) in whole.iter().zip(cached) {
            assert!((a - b).abs() < 1e-3, "{whole:?} vs {cached:?}");
        }
    }
}
