//! The meaning reader. A sentence encoder's embedding of "The food wasn't bad" sits
//! next to "The food was bad", and a head over it cannot tell them apart; a language
//! model that has read a great deal of English can. Gemma 3 270M (base, quantized) is
//! shown a few sentences we wrote with how their speaker feels (plain ones, negation,
//! contrast, idiom and matter-of-fact ones), then the text, and how likely it finds
//! each of "positive", "negative" and "neutral" next is the reading. Asked the same
//! way which emotion the speaker feels, it reads what happened ("The plumber took the
//! deposit and vanished") where an emotion lexicon finds no word. The shots are
//! run once at load; a text costs only its own tokens. A larger model,
//! Qwen2.5-Coder-1.5B-Instruct, reads the same prompt better and about eight times
//! slower (`ReaderModel`).

mod decoder;
pub mod mix;
mod models;
mod prompt;
mod spm;

use std::path::Path;

use anyhow::{Context, Result, ensure};
use candle_core::{D, Device, Tensor, quantized::gguf_file};

use decoder::{Arch, Decoder, MAX_POSITIONS, Prefix};
pub use empathy_simd::Precision;
pub use models::ReaderModel;
pub use prompt::{EMOTION_WORDS, LABEL_WORDS};
use spm::SpmTokenizer;

/// The languages the reader reads: English, which it is asked in, and those whose
/// held-out sentences it was measured to read through the same English prompt
/// (README, "Other languages"). Gemma 3 was trained on many more; a language joins
/// this list when it is measured.
pub const READ_LANGUAGES: [&str; 14] = [
    "en", "ar", "de", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "sv", "tr",
];

/// Whether the reader reads text in `language` (as detected; "" when unsure).
pub fn reads_language(language: &str) -> bool {
    language.is_empty() || READ_LANGUAGES.contains(&language)
}

pub struct MeaningReader {
    decoder: Decoder,
    tokenizer: Words,
    /// How the speaker feels: LABEL_WORDS.
    feeling: Asked,
    /// Which emotion: EMOTION_WORDS.
    emotion: Asked,
    /// The emotion answers' log-probabilities for texts without content: the model's
    /// own lean, taken off every emotion reading.
    emotion_bias: Vec<f32>,
}

/// Each architecture's tokenizer, as its GGUF describes it.
enum Words {
    Spm(SpmTokenizer),
    Bpe(empathy_bpe::GgufTokenizer),
}

impl Words {
    fn from_gguf(content: &gguf_file::Content) -> Result<Words> {
        Ok(match Arch::of(content)? {
            Arch::Gemma3 => Words::Spm(SpmTokenizer::from_gguf(content)?),
            Arch::Qwen2 => Words::Bpe(empathy_bpe::GgufTokenizer::from_gguf(content)?),
        })
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Words::Spm(spm) => Ok(spm.encode(text)),
            Words::Bpe(bpe) => bpe.encode(text),
        }
    }

    /// What a prompt starts with: Gemma's <bos>; Qwen2 is trained to start without.
    fn start(&self) -> Option<u32> {
        match self {
            Words::Spm(spm) => Some(spm.bos),
            Words::Bpe(_) => None,
        }
    }
}

/// A question ready to ask: its instruction and shots run, the words that close
/// every text, and the output rows of its answer words.
struct Asked {
    shots: Prefix,
    /// The words that close every text, as written and as ids.
    ask_text: &'static str,
    ask: Vec<u32>,
    answers: Tensor,
}

impl MeaningReader {
    /// The reader in the default precision: bf16 where the CPU has AMX (two to three
    /// times faster there, readings within a few hundredths of a nat), f32 elsewhere.
    pub fn load(path: &Path) -> Result<MeaningReader> {
        Self::load_in(path, Precision::default())
    }

    /// The reader in `precision` (`Precision::F32`: the same readings on every CPU).
    pub fn load_in(path: &Path, precision: Precision) -> Result<MeaningReader> {
        let mut file = std::fs::File::open(path)
            .with_context(|| format!("cannot open the reader's model {}", path.display()))?;
        let content = gguf_file::Content::read(&mut file)
            .with_context(|| format!("{} is not a GGUF file", path.display()))?;
        let tokenizer = Words::from_gguf(&content)?;
        let decoder = Decoder::from_gguf(&content, &mut file, precision)?;
        let feeling = Asked::new(&decoder, &tokenizer, &prompt::FEELING, &LABEL_WORDS)?;
        let emotion = Asked::new(&decoder, &tokenizer, &prompt::EMOTION, &EMOTION_WORDS)?;
        let mut reader = MeaningReader {
            decoder,
            tokenizer,
            feeling,
            emotion,
            emotion_bias: vec![0.0; EMOTION_WORDS.len()],
        };
        let mut mean = vec![0.0; EMOTION_WORDS.len()];
        for text in prompt::CONTENT_FREE {
            let [logp] = reader.answers([&reader.emotion], text)?;
            for (m, l) in mean.iter_mut().zip(logp) {
                *m += l.exp() / prompt::CONTENT_FREE.len() as f32;
            }
        }
        reader.emotion_bias = mean.iter().map(|p| p.ln()).collect();
        Ok(reader)
    }

    /// How likely the model finds each of LABEL_WORDS after `text` (log-probabilities
    /// among the three). A text too long for the window is read from its beginning.
    pub fn read(&self, text: &str) -> Result<[f32; 3]> {
        let [logp] = self.answers([&self.feeling], text)?;
        Ok(std::array::from_fn(|k| logp[k]))
    }

    /// `read` and `read_emotions` of `text` in one pass: the two questions' rows go
    /// through the model together, which costs less than two passes (the weights are
    /// read from memory once; README, "What it costs").
    pub fn read_both(&self, text: &str) -> Result<([f32; 3], [f32; 7])> {
        let [feeling, emotion] = self.answers([&self.feeling, &self.emotion], text)?;
        Ok((std::array::from_fn(|k| feeling[k]), self.fair(&emotion)?))
    }

    /// What a read request for `text` alone adds to a model's sentiment
    /// log-probabilities (`mix::text_shift` by `rule` of a text that is not unusual),
    /// the model's labels in `labels` order: zeros where the reader is unsure. This is
    /// the shift a correction of `text` is learnt with.
    pub fn text_shift(&self, text: &str, labels: &[&str; 3], rule: &mix::Rule) -> Result<[f32; 3]> {
        let reading = self.read(text)?;
        let at = |label: &str| LABEL_WORDS.iter().position(|w| *w == label);
        let mut ordered = [0.0; 3];
        for (o, label) in ordered.iter_mut().zip(labels) {
            *o = reading[at(label).with_context(|| format!("{label} is not a sentiment"))?];
        }
        let neutral = labels.iter().position(|l| *l == "neutral");
        let neutral = neutral.context("the labels have no neutral")?;
        Ok(mix::text_shift(ordered, neutral, false, rule).unwrap_or_default())
    }

    /// Which of EMOTION_WORDS the speaker of `text` feels: log-probabilities among the
    /// seven, the model's lean towards each taken off (its answers for texts without
    /// content), so that no emotion wins for being the model's favourite word.
    pub fn read_emotions(&self, text: &str) -> Result<[f32; 7]> {
        let [logp] = self.answers([&self.emotion], text)?;
        self.fair(&logp)
    }

    /// The emotion answers `logp` with the model's lean taken off, renormalised.
    fn fair(&self, logp: &[f32]) -> Result<[f32; 7]> {
        let fair: Vec<f32> = logp
            .iter()
            .zip(&self.emotion_bias)
            .map(|(l, b)| l - b)
            .collect();
        let fair = candle_nn::ops::log_softmax(&Tensor::new(fair, &Device::Cpu)?, D::Minus1)?
            .to_vec1::<f32>()?;
        Ok(std::array::from_fn(|k| fair[k]))
    }

    /// The log-probabilities of each question's answer words, among themselves, after
    /// `text`; the questions are run together (`Decoder::forward_many`).
    fn answers<const N: usize>(&self, questions: [&Asked; N], text: &str) -> Result<[Vec<f32>; N]> {
        let line = prompt::text_line(text);
        let ids = questions
            .iter()
            .map(|asked| self.prompt_ids(asked, &line))
            .collect::<Result<Vec<_>>>()?;
        let runs: Vec<_> = questions
            .iter()
            .zip(&ids)
            .map(|(asked, ids)| (Some(&asked.shots), ids.as_slice()))
            .collect();
        let answers = questions
            .iter()
            .zip(self.decoder.forward_many(&runs)?)
            .map(|(asked, (_, last))| {
                let logits = asked.answers.matmul(&last.unsqueeze(1)?)?.squeeze(1)?;
                Ok(candle_nn::ops::log_softmax(&logits, D::Minus1)?.to_vec1::<f32>()?)
            })
            .collect::<Result<Vec<_>>>()?;
        answers
            .try_into()
            .map_err(|_| anyhow::anyhow!("an answer for each question"))
    }

    /// A text's line and the question's closing words, tokenized as written out whole
    /// (Qwen2's tokenizer joins a full stop and the line break after it; Gemma's
    /// gives the same ids either way). A line too long for the window is cut, and the
    /// closing words follow it.
    fn prompt_ids(&self, asked: &Asked, line: &str) -> Result<Vec<u32>> {
        let room = MAX_POSITIONS - asked.shots.len;
        let whole = self
            .tokenizer
            .encode(&format!("{line}{}", asked.ask_text))?;
        if whole.len() <= room {
            return Ok(whole);
        }
        let line = self.tokenizer.encode(line)?;
        let mut ids = line[..line.len().min(room - asked.ask.len())].to_vec();
        ids.extend(&asked.ask);
        Ok(ids)
    }
}

impl Asked {
    fn new(
        decoder: &Decoder,
        tokenizer: &Words,
        question: &prompt::Question,
        words: &[&str],
    ) -> Result<Asked> {
        let mut ids = Vec::new();
        for word in words {
            let id = tokenizer.encode(&format!(" {word}"))?;
            ensure!(id.len() == 1, "\" {word}\" is not one token for this model");
            ids.push(id[0]);
        }
        let answers = decoder.output_rows(&ids)?;
        let mut prefix: Vec<u32> = tokenizer.start().into_iter().collect();
        prefix.extend(tokenizer.encode(&question.prefix())?);
        let (shots, _) = decoder.forward(None, &prefix)?;
        Ok(Asked {
            shots,
            ask_text: question.ask,
            ask: tokenizer.encode(question.ask)?,
            answers,
        })
    }
}

#[cfg(test)]
mod tests;
