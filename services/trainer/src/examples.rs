//! Stored feedback records as fine-tuning examples: the corrections, the text
//! embedding fusion computed, the text it analysed, and what the meaning reader added
//! to the answer. Records that cannot train the
//! serving version are skipped, and the job says how many and why.

use std::collections::BTreeMap;

use empathy_model::{MEANING_SHIFT, Manifest};
use empathy_proto::{EMOTION_LABELS, SENTIMENT_LABELS};
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

pub fn examples(stored: Vec<Stored>, versions: &Versions, serving: &Manifest) -> Examples {
    let mut out = Examples {
        examples: Vec::new(),
        skipped: BTreeMap::new(),
    };
    for s in stored {
        match example(s, versions, serving) {
            Ok(e) => out.examples.push(e),
            Err(reason) => *out.skipped.entry(reason).or_default() += 1,
        }
    }
    out
}

fn example(s: Stored, versions: &Versions, serving: &Manifest) -> Result<FeedbackExample, String> {
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
    // A reading of another width is not one fusion made: as good as none.
    let meaning = s
        .record
        .features
        .get(MEANING_SHIFT)
        .and_then(|v| <[f32; 3]>::try_from(v.values.as_slice()).ok())
        .filter(|m| m.iter().all(|x| x.is_finite()));
    Ok(FeedbackExample {
        id: s.id,
        text,
        utterance: s.record.text,
        sentiment,
        emotion,
        meaning,
    })
}
