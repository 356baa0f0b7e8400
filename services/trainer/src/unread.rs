//! Sentiment corrections stored without the deployment's meaning reader's shift (made
//! on a fusion without the reader, where it ran out of its deadline, stored before
//! fusion recorded it, or read by the other reader) are read here before a fine-tune,
//! as fusion reads a correction when it arrives: the text alone, the sentiment
//! question, zeros for text the reader does not read. Otherwise one such correction
//! would keep its tenant's line unread for good (a version is read only if every
//! sentiment correction it learnt was).

use std::collections::HashMap;
use std::path::Path;

use empathy_common::language;
use empathy_proto::SENTIMENT_LABELS;
use empathy_reader::{MeaningReader, Precision, ReaderModel, mix::Rule};
use empathy_training::finetune::FeedbackExample;

/// Readings between progress reports (each about 0.1 s).
const PROGRESS_EVERY: usize = 20;

/// What reading the unread corrections did.
#[derive(Debug, Default, PartialEq)]
pub struct Read {
    /// The readings given here, by record id (to keep with the records).
    pub readings: HashMap<String, Vec<f32>>,
    /// Corrections left unread, and why (empty when none was).
    pub left: usize,
    pub why_left: String,
}

impl Read {
    /// "; read 3 corrections stored without this meaning reader's reading", and the
    /// ones left unread with why, or nothing.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        if !self.readings.is_empty() {
            out += &format!(
                "; read {} corrections stored without this meaning reader's reading",
                self.readings.len()
            );
        }
        if self.left > 0 {
            out += &format!("; {} left unread: {}", self.left, self.why_left);
        }
        out
    }
}

/// Gives each sentiment correction in `examples` that has no reading one, with the
/// reader `model` under `assets` in `precision` (loaded only when one needs it), by
/// its rule. `cancelled` is asked between readings; `progress` hears (done, of) now
/// and then.
pub fn read(
    assets: &Path,
    (model, precision): (ReaderModel, Precision),
    examples: &mut [FeedbackExample],
    cancelled: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Read {
    let unread: Vec<&mut FeedbackExample> = examples
        .iter_mut()
        .filter(|e| e.sentiment.is_some() && e.meaning.is_none())
        .collect();
    let of = unread.len();
    if of == 0 {
        return Read::default();
    }
    let left = |why: String| Read {
        readings: HashMap::new(),
        left: of,
        why_left: why,
    };
    let path = assets.join(model.file());
    if !path.exists() {
        return left(format!(
            "no meaning reader at {} (`empathy assets fetch`)",
            path.display()
        ));
    }
    let reader = match MeaningReader::load_in(&path, precision) {
        Ok(r) => r,
        Err(e) => return left(format!("the meaning reader does not load: {e:#}")),
    };
    let rule = Rule::of(model);
    let mut out = Read::default();
    for (done, example) in unread.into_iter().enumerate() {
        if cancelled() {
            out.left += of - done;
            out.why_left = "the job was cancelled".into();
            break;
        }
        match shift(&reader, &rule, &example.utterance) {
            Ok(s) => {
                example.meaning = Some(s);
                out.readings.insert(example.id.clone(), s.to_vec());
            }
            Err(e) => {
                tracing::warn!(id = %example.id, "cannot read a correction: {e:#}");
                out.left += 1;
                out.why_left = format!("the meaning reader failed: {e:#}");
            }
        }
        if (done + 1) % PROGRESS_EVERY == 0 || done + 1 == of {
            progress(done + 1, of);
        }
    }
    out
}

/// The shift fusion would have recorded for a read analysis of `text`.
fn shift(reader: &MeaningReader, rule: &Rule, text: &str) -> anyhow::Result<[f32; 3]> {
    let language = language::resolve("", None, text);
    if text.trim().is_empty() || !empathy_reader::reads_language(&language) {
        return Ok([0.0; 3]);
    }
    reader.text_shift(text, &SENTIMENT_LABELS, rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(sentiment: Option<usize>, meaning: Option<[f32; 3]>) -> FeedbackExample {
        FeedbackExample {
            id: "f".into(),
            text: vec![0.0; 4],
            utterance: "The strep test came back negative.".into(),
            sentiment,
            emotion: Some(0),
            meaning,
        }
    }

    #[test]
    fn nothing_unread_loads_nothing() {
        let mut examples = vec![example(Some(2), Some([0.1; 3])), example(None, None)];
        let read = read(
            Path::new("/nonexistent"),
            (ReaderModel::default(), Precision::F32),
            &mut examples,
            &|| false,
            &mut |_, _| {},
        );
        assert_eq!(read, Read::default());
        assert_eq!(read.summary(), "");
    }

    #[test]
    fn without_the_reader_the_unread_stay_unread_and_the_job_says_why() {
        let mut examples = vec![example(Some(2), None), example(Some(0), Some([0.0; 3]))];
        let read = read(
            Path::new("/nonexistent"),
            (ReaderModel::default(), Precision::F32),
            &mut examples,
            &|| false,
            &mut |_, _| {},
        );
        assert_eq!((read.readings.len(), read.left), (0, 1));
        assert!(examples[0].meaning.is_none());
        assert!(
            read.summary()
                .contains("1 left unread: no meaning reader at")
        );
    }
}
