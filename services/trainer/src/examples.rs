//! Stored feedback records as fine-tuning examples: the corrections, the text
//! embedding fusion computed, the text it analysed, and what the deployment's meaning
//! reader added to the answer. Records that cannot train the
//! serving version are skipped, and the job says how many and why.

use std::collections::BTreeMap;

use empathy_model::{MEANING_SHIFT, Manifest};
use empathy_proto::v1::FeedbackRecord;
use empathy_proto::{EMOTION_LABELS, SENTIMENT_LABELS};
use empathy_reader::ReaderModel;
use empathy_training::finetune::FeedbackExample;

use crate::store::Stored;
use crate::versions::Versions;

pub struct Examples {
    pub examples: Vec<FeedbackExample>,
    /// Why records were skipped, with how many each.
    pub skipped: BTreeMap<String, usize>,
}

impl Examples {
    /// "3 skipped (2: no text features; 1: v0003 used the text encoder …)", or "".
    pub fn skipped_summary(&self) -> String {
        if self.skipped.is_empty() {
            return String::new();
        }
        let n: usize = self.skipped.values().sum();
        let why: Vec<String> = self
            .skipped
            .iter()
            .map(|(reason, k)| format!("{k}: {reason}"))
            .collect();
        format!("{n} skipped ({})", why.join("; "))
    }
}

/// The records in `stored` that can train `serving`, with the readings of `reader`.
pub fn examples(
    stored: Vec<Stored>,
    versions: &Versions,
    (serving, reader): (&Manifest, ReaderModel),
) -> Examples {
    let mut out = Examples {
        examples: Vec::new(),
        skipped: BTreeMap::new(),
    };
    for s in stored {
        match example(s, versions, (serving, reader)) {
            Ok(e) => out.examples.push(e),
            Err(reason) => *out.skipped.entry(reason).or_default() += 1,
        }
    }
    out
}

fn example(
    s: Stored,
    versions: &Versions,
    (serving, reader): (&Manifest, ReaderModel),
) -> Result<FeedbackExample, String> {
    let fb = s.record.feedback.as_ref().ok_or("no correction")?;
    let sentiment = SENTIMENT_LABELS.iter().position(|l| *l == fb.sentiment);
    let emotion = EMOTION_LABELS.iter().position(|l| *l == fb.emotion);
    if sentiment.is_none() && emotion.is_none() {
        return Err("no sentiment or emotion correction".into());
    }
    let text = s
        .record
        .features
        .get("text")
        .ok_or("no text features (an analysis without text)")?
        .values
        .clone();
    versions.compatible(&s.record.model_version, serving)?;
    let meaning = reading(&s.record, reader);
    Ok(FeedbackExample {
        id: s.id,
        text,
        utterance: s.record.text,
        sentiment,
        emotion,
        meaning,
    })
}

/// `record`'s meaning shift if `reader` made it; None otherwise, so that the
/// correction is read again by the deployment's reader (each reader shifts by its own
/// rule). A reading of another width is not one fusion made: as good as none.
fn reading(record: &FeedbackRecord, reader: ReaderModel) -> Option<[f32; 3]> {
    record
        .features
        .get(MEANING_SHIFT)
        .filter(|_| ReaderModel::recorded(&record.meaning_reader) == reader.name())
        .and_then(|v| <[f32; 3]>::try_from(v.values.as_slice()).ok())
        .filter(|m| m.iter().all(|x| x.is_finite()))
}

#[cfg(test)]
mod tests {
    use empathy_proto::v1::FloatVector;

    use super::*;

    #[test]
    fn only_the_deployments_reader_counts_as_read() {
        let (gemma, qwen) = (ReaderModel::Gemma3_270m, ReaderModel::Qwen25Coder_1_5b);
        let read_by = |by: &str, values: Vec<f32>| FeedbackRecord {
            features: [(MEANING_SHIFT.to_string(), FloatVector { values })].into(),
            meaning_reader: by.into(),
            ..FeedbackRecord::default()
        };
        let shift = vec![0.5, 0.0, -0.5];
        let qwens = read_by("qwen2.5-coder-1.5b", shift.clone());
        assert_eq!(reading(&qwens, qwen), Some([0.5, 0.0, -0.5]));
        assert_eq!(reading(&qwens, gemma), None, "another reader's shift");
        // Stored before records named their reader: the default reader's.
        let unnamed = read_by("", shift);
        assert_eq!(reading(&unnamed, gemma), Some([0.5, 0.0, -0.5]));
        assert_eq!(reading(&unnamed, qwen), None);
        assert_eq!(reading(&read_by("gemma-3-270m", vec![1.0; 2]), gemma), None);
        assert_eq!(
            reading(&read_by("gemma-3-270m", vec![f32::NAN; 3]), gemma),
            None
        );
        assert_eq!(reading(&FeedbackRecord::default(), gemma), None, "unread");
    }
}
