//! The meaning reader's part of an answer. The serving model reads a sentence
//! embedding, which says what a text is about more than which way it leans ("The food
//! wasn't bad" sits next to "The food was bad"); the reader (Gemma 3 270M, or the
//! larger Qwen2.5-Coder-1.5B, asked how the speaker feels) reads negation, contrast and
//! idiom, and in a conversation what the turns before imply; asked which emotion, it
//! reads what happened where the emotion lexicon finds no word. How its readings move the answer (sentiment,
//! valence, emotions) is `empathy_reader::mix`.

use std::{path::Path, sync::Arc, time::Duration, time::Instant};

use empathy_model::{CONTEXT, EMOTIONS_CORRECTED, Manifest, Prediction};
use empathy_proto::v1::{MeaningReading, Turn};
use empathy_proto::{EMOTION_LABELS, NEUTRAL_SENTIMENT, SENTIMENT_LABELS, v1::StageTiming};
use empathy_reader::{EMOTION_WORDS, LABEL_WORDS, MeaningReader, Precision, ReaderModel, mix};
use tonic::Status;

use crate::reader_turns::ReaderTurns;

/// How this server offers the meaning reader (fusion's `--meaning-reader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Not loaded: a request that asks for it is refused.
    Off,
    /// Loaded; reads every request that does not turn it off.
    On,
    /// Loaded; reads only the requests that ask for it (`MEANING_READING_ON`), so
    /// bulk traffic keeps the model's speed.
    OnRequest,
}

/// Whether the reader reads a request that chose `choice` (its
/// `options.meaning_reading`), on a server offering it as `mode`, the reader `loaded`
/// or not (`--meaning-reader` given but the model never fetched).
pub fn wanted(mode: Mode, loaded: bool, choice: MeaningReading) -> Result<bool, Status> {
    match choice {
        MeaningReading::Off => Ok(false),
        MeaningReading::ServerDefault => Ok(loaded && mode == Mode::On),
        MeaningReading::On if loaded => Ok(true),
        MeaningReading::On if mode == Mode::Off => Err(Status::failed_precondition(
            "options.meaning_reading asks for the meaning reader, but this server runs \
             without it (start fusion with --meaning-reader on or on-request)",
        )),
        MeaningReading::On => Err(Status::failed_precondition(
            "options.meaning_reading asks for the meaning reader, but this server has not \
             got its model (run `empathy assets fetch` where fusion runs, and restart it)",
        )),
    }
}

pub struct Meaning {
    reader: Arc<MeaningReader>,
    /// Which model reads: Info names it, and a scene weighs as it was chosen for it.
    model: ReaderModel,
    turns: ReaderTurns,
    /// What multiplies in bf16 (AMX tiles, AVX-512 BF16), else None (f32): Info says
    /// which, since replicas on different CPUs can read a text a few hundredths of a
    /// nat apart.
    bf16: Option<&'static str>,
}

impl Meaning {
    /// The reader `model` at `<assets>/reader/...`, reading at most `at_once` texts
    /// at a time, or None (logged) when it was not fetched.
    pub fn load(
        assets: &Path,
        model: ReaderModel,
        precision: Precision,
        at_once: usize,
    ) -> anyhow::Result<Option<Meaning>> {
        let path = assets.join(model.file());
        if !path.exists() {
            tracing::warn!(
                path = %path.display(),
                "no meaning reader (run `empathy assets fetch`): sentiment is the model's alone"
            );
            return Ok(None);
        }
        let reader = MeaningReader::load_in(&path, precision)?;
        let bf16 = precision.bf16_unit();
        tracing::info!(
            %model,
            arithmetic = bf16.unwrap_or("f32"),
            at_once,
            "meaning reader loaded (bf16 on AMX tiles or AVX-512 BF16, else f32)"
        );
        Ok(Some(Meaning {
            reader: Arc::new(reader),
            model,
            turns: ReaderTurns::new(at_once),
            bf16,
        }))
    }

    /// Which model reads.
    pub fn model(&self) -> ReaderModel {
        self.model
    }

    /// What the reader multiplies in, in words.
    pub fn arithmetic(&self) -> String {
        match self.bf16 {
            Some(unit) => format!("bf16 on this CPU's {unit}"),
            None => "f32".into(),
        }
    }

    /// The reader's reading of `text`, or a note saying why there is none (the
    /// deadline passed, or the reader failed); and how long it took.
    pub async fn read(
        &self,
        text: &str,
        deadline: Duration,
    ) -> (Result<Reading, String>, StageTiming) {
        let started = Instant::now();
        let reading = self.read_within(text, deadline).await;
        let timing = StageTiming {
            stage: "meaning".into(),
            ms: started.elapsed().as_secs_f32() * 1000.0,
        };
        (reading, timing)
    }

    /// The shift a read request for `text` alone would get on a fine-tuned version
    /// (whose texts are never `unusual`: it keeps no typicality), for a correction of
    /// an analysis the reader did not read; None if it could not read in time. Only
    /// the sentiment question is asked.
    pub async fn text_shift(&self, text: &str, deadline: Duration) -> Option<[f32; 3]> {
        let rule = mix::Rule::of(self.model);
        self.within(text, deadline, move |reader, text| {
            reader.text_shift(text, &SENTIMENT_LABELS, &rule)
        })
        .await
        .ok()
    }

    /// Both questions, in one pass: how the speaker feels, and which emotion.
    async fn read_within(&self, text: &str, deadline: Duration) -> Result<Reading, String> {
        let (sentiment, emotions) = self
            .within(text, deadline, |reader, text| reader.read_both(text))
            .await?;
        Ok(Reading {
            sentiment: in_order(&SENTIMENT_LABELS, &LABEL_WORDS, &sentiment),
            emotions: in_order(&EMOTION_LABELS, &EMOTION_WORDS, &emotions),
        })
    }

    /// Runs `ask` on the reader for `text` in its turn, on a blocking thread, within
    /// `deadline`; the error says why in words.
    async fn within<T: Send + 'static>(
        &self,
        text: &str,
        deadline: Duration,
        ask: impl FnOnce(&MeaningReader, &str) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let (reader, text) = (Arc::clone(&self.reader), text.to_string());
        let answer = self
            .turns
            .run(deadline, move || ask(&reader, &text))
            .await?;
        answer.map_err(|e| {
            tracing::warn!(error = %e, "the meaning reader failed");
            format!("the meaning reader failed: {e:#}")
        })
    }
}

/// The note for a request that asked for the reader (`choice`) on a `version` it
/// does not read for, and `why` (`not_read_for`). None for a request that did not ask.
pub fn fine_tuned_note(choice: MeaningReading, version: &str, why: &str) -> Option<String> {
    (choice == MeaningReading::On)
        .then(|| format!("the meaning reader does not read for model version {version}: {why}"))
}

/// What the reader did for one request, as the answer and its feedback record need it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Not asked to read (or the version's corrections would not hold), or it failed:
    /// the record keeps no reading.
    Unread,
    /// Asked, but there was nothing it reads (another language, no text, turns that
    /// could not be encoded): the model's answer stands, as the reader would leave it.
    NothingToRead,
    /// Read: `shift` was added to the model's sentiment log-probabilities, and the
    /// emotions were moved or kept.
    Read { shift: [f32; 3], emotions: Emotions },
}

impl Outcome {
    /// Whether the reader's reading moved the emotions (their source says "+reader").
    pub fn moved_emotions(self) -> bool {
        matches!(
            self,
            Outcome::Read {
                emotions: Emotions::Moved,
                ..
            }
        )
    }

    /// What the feedback record keeps: the shift the answer got from the reader,
    /// zeros where it had nothing to read, None where it was not asked.
    pub fn shift(self) -> Option<[f32; 3]> {
        match self {
            Outcome::Unread => None,
            Outcome::NothingToRead => Some([0.0; 3]),
            Outcome::Read { shift, .. } => Some(shift),
        }
    }
}

/// What the reader read, in SENTIMENT_LABELS and EMOTION_LABELS order
/// (log-probabilities).
pub struct Reading {
    pub sentiment: [f32; 3],
    pub emotions: [f32; 7],
}

/// `values` given in `words` order, put in `labels` order.
fn in_order<const N: usize>(labels: &[&str; N], words: &[&str; N], values: &[f32; N]) -> [f32; N] {
    labels.map(|label| {
        let k = words.iter().position(|w| *w == label).unwrap_or(0);
        values[k]
    })
}

/// Whether a reading moves the emotions too: not those of a version whose emotion
/// head learned from corrections (`EMOTIONS_CORRECTED`), which it would overrule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emotions {
    Moved,
    Kept,
}

impl Emotions {
    pub fn of(manifest: &Manifest) -> Emotions {
        if manifest.emotion_source == EMOTIONS_CORRECTED {
            Emotions::Kept
        } else {
            Emotions::Moved
        }
    }
}

/// Why the reader `model` does not read for `manifest`'s version, or None where it
/// does: a base version, or one fine-tuned on corrections that hold with this
/// reader's readings. Without them the reader would overrule what the corrections
/// taught; another reader's shifts are not this one's (each has its own rule).
pub fn not_read_for(manifest: &Manifest, model: ReaderModel) -> Option<String> {
    // A base version learnt no corrections: any reader reads for it.
    manifest.parent.as_ref()?;
    if !manifest.corrections_hold_with_reader {
        return Some(
            "it learnt its corrections without the reader's readings, which would overrule \
             them"
                .into(),
        );
    }
    let by = ReaderModel::recorded(manifest.corrections_read_by.as_deref().unwrap_or(""));
    (by != model.name()).then(|| {
        format!(
            "it learnt its corrections with the readings of {by}, not of this server's {}; \
             a fine-tune under this reader reads them again",
            model.name()
        )
    })
}

/// Moves the answer by the `reading` of the analysed text, by the rule of the reader
/// `model`: the sentiment if the reader is sure (more where the text is `unusual` for
/// the model), by its shift times `scale` (the version's `reader_shift_scale`), and
/// the emotions as `emotions` says. Returns the reader's shift of the model's sentiment log-probabilities
/// (unscaled; zeros where the reader was unsure), which feedback keeps so that
/// fine-tuning learns a correction as it will be served (`empathy_reader::mix`).
pub fn mix(
    prediction: &mut Prediction,
    (reading, model): (&Reading, ReaderModel),
    unusual: bool,
    (emotions, scale): (Emotions, f32),
) -> [f32; 3] {
    let rule = mix::Rule::of(model);
    let shift = mix::text_shift(reading.sentiment, NEUTRAL_SENTIMENT, unusual, &rule);
    let sentiment = shift.map_or(prediction.sentiment, |s| {
        mix::with_text_shift(prediction.sentiment, s.map(|x| x * scale))
    });
    settle(prediction, sentiment, (&reading.emotions, emotions), 1.0);
    shift.unwrap_or_default()
}

/// The attention the model gave the turns before (0 without them).
pub fn context_weight(prediction: &Prediction) -> f32 {
    prediction
        .attention
        .iter()
        .filter(|(name, _)| name.split(':').next() == Some(CONTEXT))
        .map(|(_, w)| w)
        .sum()
}

/// The text the reader reads for a conversation: the turns before, oldest first.
pub fn scene(turns: &[Turn]) -> String {
    let texts: Vec<&str> = turns.iter().map(|t| t.text.trim()).collect();
    texts.join(" ")
}

/// Moves the answer by the reader's `reading` of the turns before, as far as the
/// model let them weigh (`context_weight`), scaled as in `mix`; returns the sentiment
/// shift, as `mix`.
pub fn mix_scene(
    prediction: &mut Prediction,
    (reading, model): (&Reading, ReaderModel),
    context_weight: f32,
    (emotions, scale): (Emotions, f32),
) -> [f32; 3] {
    let shift = mix::scene_shift(reading.sentiment, context_weight, &mix::Rule::of(model));
    let sentiment = mix::with_scene_shift(prediction.sentiment, shift.map(|x| x * scale));
    settle(
        prediction,
        sentiment,
        (&reading.emotions, emotions),
        context_weight,
    );
    shift
}

/// Puts the moved `sentiment` in the answer; valence keeps its half from the
/// sentiment (p(positive) - p(negative)), and, unless they are `Kept`, the emotions
/// are moved by the reader's `emotions` reading, weighed `weight`, towards those that
/// agree with the sentiment.
fn settle(
    prediction: &mut Prediction,
    sentiment: [f32; 3],
    (emotions, move_them): (&[f32; 7], Emotions),
    weight: f32,
) {
    let probability = |s: &[f32; 3], label: &str| {
        SENTIMENT_LABELS
            .iter()
            .position(|l| *l == label)
            .map_or(0.0, |k| s[k])
    };
    let lean = |s: &[f32; 3]| probability(s, "positive") - probability(s, "negative");
    let moved = 0.5 * (lean(&sentiment) - lean(&prediction.sentiment));
    prediction.valence = (prediction.valence + moved).clamp(-1.0, 1.0);
    prediction.sentiment = sentiment;
    if move_them == Emotions::Kept {
        return;
    }
    let agreement = mix::agreement(|label| probability(&sentiment, label));
    prediction.emotions = mix::emotions_by_reading(
        prediction.emotions,
        *emotions,
        weight,
        in_order(&EMOTION_LABELS, &EMOTION_WORDS, &agreement),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::tests::prediction;

    #[test]
    fn a_request_chooses_within_what_the_server_offers() {
        use MeaningReading::{Off, On, ServerDefault};
        let read = |mode, loaded, choice| wanted(mode, loaded, choice).ok();
        assert_eq!(read(Mode::On, true, ServerDefault), Some(true));
        assert_eq!(read(Mode::On, true, Off), Some(false));
        assert_eq!(read(Mode::OnRequest, true, ServerDefault), Some(false));
        assert_eq!(read(Mode::OnRequest, true, On), Some(true));
        assert_eq!(read(Mode::Off, false, ServerDefault), Some(false));
        assert_eq!(read(Mode::On, false, ServerDefault), Some(false));
        let refused = |mode| wanted(mode, false, On).err();
        let off = refused(Mode::Off);
        assert_eq!(
            off.as_ref().map(Status::code),
            Some(tonic::Code::FailedPrecondition)
        );
        assert!(off.is_some_and(|e| e.message().contains("--meaning-reader on")));
        let unfetched = refused(Mode::On);
        assert!(unfetched.is_some_and(|e| e.message().contains("empathy assets fetch")));
    }

    #[test]
    fn a_fine_tuned_version_says_why_only_to_those_that_asked() {
        let note = fine_tuned_note(MeaningReading::On, "v0003", "it learnt ...");
        assert_eq!(
            note.as_deref(),
            Some("the meaning reader does not read for model version v0003: it learnt ...")
        );
        for choice in [MeaningReading::ServerDefault, MeaningReading::Off] {
            assert_eq!(fine_tuned_note(choice, "v0003", "it learnt ..."), None);
        }
    }

    #[test]
    fn a_fine_tuned_version_is_read_only_by_the_reader_its_corrections_were_read_by() {
        let (gemma, qwen) = (ReaderModel::Gemma3_270m, ReaderModel::Qwen25Coder_1_5b);
        let base = Manifest {
            format_version: 1,
            version: "v0002".into(),
            parent: None,
            created_unix_ms: 0,
            labels: empathy_model::checkpoint::Labels::ours(),
            dims: Default::default(),
            trained_tokens: vec!["text".into()],
            emotion_source: "lexicon".into(),
            training: Default::default(),
            metrics: Default::default(),
            weights_sha256: String::new(),
            lexicon_expansion: None,
            calibration: None,
            typicality: None,
            corrections_hold_with_reader: false,
            corrections_read_by: None,
            reader_shift_scale: None,
        };
        assert_eq!(
            not_read_for(&base, qwen),
            None,
            "a base version is read by any"
        );
        let tuned = |read: bool, by: Option<ReaderModel>| Manifest {
            parent: Some("v0001".into()),
            corrections_hold_with_reader: read,
            corrections_read_by: by.map(|m| m.name().to_string()),
            ..base.clone()
        };
        let unread = not_read_for(&tuned(false, None), gemma);
        assert!(unread.is_some_and(|w| w.contains("without the reader's readings")));
        assert_eq!(not_read_for(&tuned(true, Some(qwen)), qwen), None);
        let other = not_read_for(&tuned(true, Some(qwen)), gemma);
        assert!(
            other
                .as_deref()
                .is_some_and(|w| w
                    .contains("readings of qwen2.5-coder-1.5b, not of this server's gemma-3-270m")),
            "{other:?}"
        );
        // Written before manifests named the reader: the default one's.
        assert_eq!(not_read_for(&tuned(true, None), gemma), None);
        assert!(not_read_for(&tuned(true, None), qwen).is_some());
    }

    #[test]
    fn the_context_weight_is_the_attention_the_turns_before_had() {
        let mut p = prediction([0.2, 0.2, 0.6]);
        assert_eq!(context_weight(&p), 0.0);
        p.attention = vec![
            ("text".into(), 0.4),
            ("lexicon".into(), 0.2),
            ("context:0".into(), 0.1),
            ("context:1".into(), 0.3),
        ];
        assert!((context_weight(&p) - 0.4).abs() < 1e-6);
    }

    #[test]
    fn a_sure_reading_moves_sentiment_valence_and_emotions_together() {
        // The model says positive and the lexicon joy ("What a lovely surprise bill").
        let mut p = prediction([0.1, 0.2, 0.7]);
        p.valence = 0.5;
        p.emotions = [0.0, 0.0, 0.0, 0.8, 0.0, 0.0, 0.2];
        let ln = |v: [f32; 7]| v.map(f32::ln);
        let reading = Reading {
            sentiment: [(0.9f32).ln(), (0.05f32).ln(), (0.05f32).ln()],
            emotions: ln([0.6, 0.1, 0.05, 0.05, 0.1, 0.05, 0.05]),
        };
        let kept = {
            let mut q = p.clone();
            let shift = mix(
                &mut q,
                (&reading, ReaderModel::default()),
                false,
                (Emotions::Kept, 1.0),
            );
            assert_eq!(
                q.emotions, p.emotions,
                "a corrected emotion head's emotions stay"
            );
            assert!(q.sentiment[0] > q.sentiment[2], "{:?}", q.sentiment);
            shift
        };
        let shift = mix(
            &mut p,
            (&reading, ReaderModel::default()),
            false,
            (Emotions::Moved, 1.0),
        );
        assert_eq!(shift, kept);
        // What was added to the model's log-probabilities: the answer is the model's
        // moved by it, then sharpened (which keeps the order).
        let model = [0.1f32, 0.2, 0.7].map(f32::ln);
        let served = |k: usize| model[k] + shift[k];
        assert!(served(0) > served(1) && served(0) > served(2), "{shift:?}");
        assert!(p.sentiment[0] > p.sentiment[2], "{:?}", p.sentiment);
        assert!(p.valence < 0.0, "{}", p.valence);
        let top = (0..7).max_by(|&a, &b| p.emotions[a].total_cmp(&p.emotions[b]));
        assert_eq!(
            top.map(|k| EMOTION_LABELS[k]),
            Some("anger"),
            "{:?}",
            p.emotions
        );
        assert!((p.emotions.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn a_versions_scale_multiplies_the_shift_served_not_the_one_recorded() {
        // The reader leans negative; the model leans positive.
        let reading = Reading {
            sentiment: [(0.7f32).ln(), (0.1f32).ln(), (0.2f32).ln()],
            emotions: [(1.0f32 / 7.0).ln(); 7],
        };
        let model = [0.2, 0.2, 0.6];
        for scene in [false, true] {
            let answer = |scale: f32| {
                let mut p = prediction(model);
                let shift = if scene {
                    mix_scene(
                        &mut p,
                        (&reading, ReaderModel::default()),
                        0.5,
                        (Emotions::Kept, scale),
                    )
                } else {
                    mix(
                        &mut p,
                        (&reading, ReaderModel::default()),
                        false,
                        (Emotions::Kept, scale),
                    )
                };
                (p.sentiment, shift)
            };
            let (_, shift) = answer(1.0);
            let (served, recorded) = answer(0.5);
            assert_eq!(recorded, shift, "the record keeps the reading, unscaled");
            let half = shift.map(|x| x * 0.5);
            let expected = if scene {
                mix::with_scene_shift(model, half)
            } else {
                mix::with_text_shift(model, half)
            };
            for (a, b) in served.iter().zip(expected) {
                assert!((a - b).abs() < 1e-6, "{scene}: {served:?} {expected:?}");
            }
        }
    }

    #[test]
    fn a_scene_is_the_turns_oldest_first() {
        let turn = |speaker: &str, text: &str| Turn {
            speaker: speaker.into(),
            text: text.into(),
        };
        let turns = [
            turn("user", " My order is late. "),
            turn("agent", "It ships Monday."),
        ];
        assert_eq!(scene(&turns), "My order is late. It ships Monday.");
    }
}
