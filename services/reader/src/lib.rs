//! The meaning reader. A sentence encoder's embedding of "The food wasn't bad" sits
//! next to "The food was bad", and a head over it cannot tell them apart; a language
//! model that has read a great deal of English can. Gemma 3 270M (base, quantized) is
//! shown a few sentences we wrote with how their speaker feels (plain ones, negation,
//! contrast, idiom and matter-of-fact ones), then the text, and how likely it finds
//! each of "positive", "negative" and "neutral" next is the reading. The shots are run
//! once at load; a text costs only its own tokens.

mod gemma;
pub mod mix;
mod prompt;
mod spm;

use std::path::Path;

use anyhow::{Context, Result, ensure};
use candle_core::{D, Tensor, quantized::gguf_file};

use gemma::{Gemma, MAX_POSITIONS, Prefix};
pub use prompt::LABEL_WORDS;
use spm::SpmTokenizer;

/// Where `empathy assets fetch` puts the model, under the assets folder.
pub const MODEL_FILE: &str = "reader/gemma-3-270m-q4_k_m.gguf";

pub struct MeaningReader {
    gemma: Gemma,
    tokenizer: SpmTokenizer,
    /// The instructions and shots, run.
    shots: Prefix,
    /// The output rows of the label words, (3, dim), in LABEL_WORDS order.
    labels: Tensor,
    /// "\nFeeling:", which closes every text.
    ask: Vec<u32>,
}

impl MeaningReader {
    pub fn load(path: &Path) -> Result<MeaningReader> {
        let mut file = std::fs::File::open(path)
            .with_context(|| format!("cannot open the reader's model {}", path.display()))?;
        let content = gguf_file::Content::read(&mut file)
            .with_context(|| format!("{} is not a GGUF file", path.display()))?;
        let tokenizer = SpmTokenizer::from_gguf(&content)?;
        let gemma = Gemma::from_gguf(&content, &mut file)?;
        let mut label_ids = Vec::new();
        for word in LABEL_WORDS {
            let ids = tokenizer.encode(&format!(" {word}"));
            ensure!(
                ids.len() == 1,
                "\" {word}\" is not one token for this model"
            );
            label_ids.push(ids[0]);
        }
        let labels = gemma.output_rows(&label_ids)?;
        let mut prefix = vec![tokenizer.bos];
        prefix.extend(tokenizer.encode(&prompt::shots()));
        let (shots, _) = gemma.forward(None, &prefix)?;
        let ask = tokenizer.encode(prompt::ASK);
        Ok(MeaningReader {
            gemma,
            tokenizer,
            shots,
            labels,
            ask,
        })
    }

    /// How likely the model finds each of LABEL_WORDS after `text` (log-probabilities
    /// among the three). A text too long for the window is read from its beginning.
    pub fn read(&self, text: &str) -> Result<[f32; 3]> {
        let mut ids = self.tokenizer.encode(&prompt::text_line(text));
        let room = MAX_POSITIONS - self.shots.len - self.ask.len();
        ids.truncate(room);
        ids.extend(&self.ask);
        let (_, last) = self.gemma.forward(Some(&self.shots), &ids)?;
        let logits = self.labels.matmul(&last.unsqueeze(1)?)?.squeeze(1)?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?.to_vec1::<f32>()?;
        Ok([logp[0], logp[1], logp[2]])
    }
}

#[cfg(test)]
mod tests;
