//! A text prefilled once and continued many times: each situation of a request is
//! scored (PMI) and read (its emotion) after the same words about the utterance, and
//! running those words through the model again for every situation was most of the
//! time an answer took.

use anyhow::{Result, ensure};

use crate::llama::{Model, SeqCache};

pub struct CachedPrefix {
    ids: Vec<u32>,
    cache: SeqCache,
}

impl CachedPrefix {
    /// The ids it holds.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// `ids` run through `model` once.
    pub fn new(model: &Model, ids: Vec<u32>) -> Result<Self> {
        let mut cache = model.new_cache(ids.len());
        model.prefill(&ids, &mut cache)?;
        Ok(Self { ids, cache })
    }

    /// A cache holding all but the last of these ids, with room for `more` tokens
    /// after them; and the last id, which must run again to predict what follows.
    pub fn fork(&self, model: &Model, more: usize) -> Result<(SeqCache, &[u32])> {
        ensure!(!self.ids.is_empty(), "an empty prefix predicts nothing");
        let kept = self.ids.len() - 1;
        let cache = model.fork_cache_first(&self.cache, kept, self.ids.len() + more)?;
        Ok((cache, &self.ids[kept..]))
    }

    /// log p(`target` | these ids) under `model`, running only the target (and the
    /// last id).
    pub fn log_likelihood(&self, model: &Model, target: &[u32]) -> Result<f32> {
        let (cache, rest) = self.fork(model, target.len())?;
        model.log_likelihood_in(cache, rest, target)
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        feeling::FeelingReader,
        llama::WeightFormat,
        pmi::{neutral_context, situation_pass, utterance_context},
    };

    /// The engine's one pass after prefilled contexts gives what running each text
    /// whole gives: the situation's likelihood after its utterance and after the
    /// neutral context, and the logits after "... So they felt".
    #[test]
    fn one_pass_after_prefilled_contexts_changes_no_score() {
        let (model, tok) = crate::llama::tests::model(WeightFormat::Q4);
        let reader = FeelingReader::new(&model, &tok).unwrap();
        let with = utterance_context(&model, &tok, "The package arrived broken.").unwrap();
        let without = neutral_context(&model, &tok).unwrap();
        let situation = "A woman waited two weeks for a lamp and found it smashed in its box.";
        let pass = situation_pass(
            &model,
            &tok,
            &with,
            Some(&without),
            situation,
            reader.tail(),
        )
        .unwrap();

        let target = tok.encode(&format!(" {situation}")).unwrap();
        let whole = (model.log_likelihood(with.ids(), &target).unwrap()
            - model.log_likelihood(without.ids(), &target).unwrap())
            / target.len() as f32;
        let cached = pass.pmi.unwrap();
        assert!((whole - cached).abs() < 1e-3, "PMI {whole} vs {cached}");

        let story = [with.ids(), &target, reader.tail()].concat();
        let mut cache = model.new_cache(story.len());
        let next = model.prefill(&story, &mut cache).unwrap();
        let diff = crate::llama::tests::max_abs_diff(&next, &pass.next);
        assert!(diff < 1e-2, "logits after the story differ by {diff}");
    }
}
