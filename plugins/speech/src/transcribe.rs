//! Whisper transcription with whisper-rs: one context (the weights) loaded once and
//! shared, and a bounded pool of decoding states so that several clips run at once.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use empathy_plugin_api::PluginError;
use empathy_proto::v1::Segment;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use crate::pool::Pool;
use crate::resample::WHISPER_RATE;

/// A converted model under `<assets>/speech/` (`empathy assets fetch` writes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhisperModel {
    /// English only, fastest.
    TinyEn,
    /// 99 languages, with language detection.
    Base,
}

impl WhisperModel {
    pub const NAMES: &str = "tiny.en, base";

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "tiny.en" => Some(Self::TinyEn),
            "base" => Some(Self::Base),
            _ => None,
        }
    }

    pub fn file_name(self) -> &'static str {
        match self {
            Self::TinyEn => "ggml-tiny.en.bin",
            Self::Base => "ggml-base.bin",
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Self::TinyEn => "openai/whisper-tiny.en",
            Self::Base => "openai/whisper-base",
        }
    }

    pub fn multilingual(self) -> bool {
        self == Self::Base
    }
}

/// What Whisper heard.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    pub text: String,
    pub segments: Vec<Segment>,
    pub language: String,
}

/// Whisper encodes 30 s windows of 1500 positions: 50 per second.
const POSITIONS_PER_SECOND: f64 = 50.0;
const FULL_WINDOW: usize = 1500;
/// Extra encoder positions past the clip's end: without a little silence after the
/// speech, the decoder may not see where it ends.
const AUDIO_CTX_MARGIN: usize = 64;
/// whisper.cpp skips input shorter than 1 s: shorter clips are padded with silence.
const MIN_SAMPLES: usize = WHISPER_RATE as usize * 21 / 20;

/// The states hold the shared weights (whisper-rs counts references to them).
pub struct Transcriber {
    model: WhisperModel,
    /// Encode whisper.cpp's full 30 s window for every clip instead of [`audio_ctx`].
    full_window: bool,
    states: Pool<WhisperState>,
    /// Multilingual models: a state that only detects languages. whisper.cpp detects
    /// with the window of the state's previous transcription, so a pool state would
    /// answer differently for the same clip; this one never transcribes, so it always
    /// detects on the full 30 s window Whisper was trained on.
    detector: Option<Mutex<WhisperState>>,
}

impl Transcriber {
    /// Loads the model and `states` decoding states (each holds its own buffers).
    pub fn load(
        path: &Path,
        model: WhisperModel,
        states: usize,
        full_window: bool,
    ) -> Result<Self, PluginError> {
        whisper_rs::install_logging_hooks();
        if !path.is_file() {
            return Err(PluginError::unavailable(format!(
                "the Whisper model {} is missing: run `empathy assets fetch`",
                path.display()
            )));
        }
        let context = WhisperContext::new_with_params(path, WhisperContextParameters::default())
            .map_err(|e| {
                PluginError::unavailable(format!("cannot load {}: {e}", path.display()))
            })?;
        if context.is_multilingual() != model.multilingual() {
            return Err(PluginError::unavailable(format!(
                "{} does not hold the {:?} model",
                path.display(),
                model
            )));
        }
        let idle = (0..states)
            .map(|_| context.create_state())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PluginError::unavailable(format!("cannot create a Whisper state: {e}")))?;
        let detector = match model.multilingual() {
            true => Some(Mutex::new(context.create_state().map_err(|e| {
                PluginError::unavailable(format!("cannot create a Whisper state: {e}"))
            })?)),
            false => None,
        };
        Ok(Self {
            model,
            full_window,
            states: Pool::new(idle),
            detector,
        })
    }

    pub fn model(&self) -> WhisperModel {
        self.model
    }

    /// Checks a BCP-47 language hint ("" = detect) and returns Whisper's code for it.
    pub fn language(&self, hint: &str) -> Result<Option<String>, PluginError> {
        let primary = hint
            .split(['-', '_'])
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if primary.is_empty() {
            return Ok(None);
        }
        if !self.model.multilingual() && primary != "en" {
            return Err(PluginError::invalid_input(format!(
                "language {hint:?} cannot be transcribed by the English-only model tiny.en (setting speech.model=base covers 99 languages)"
            )));
        }
        if whisper_rs::get_lang_id(&primary).is_none() {
            return Err(PluginError::invalid_input(format!(
                "language {hint:?} is not one Whisper knows"
            )));
        }
        Ok(Some(primary))
    }

    /// Transcribes 16 kHz mono samples with `threads` compute threads, waiting for a
    /// free state when all are busy.
    pub fn transcribe(
        &self,
        samples: &[f32],
        language: Option<&str>,
        threads: usize,
    ) -> Result<Transcript, PluginError> {
        // Back in the pool when dropped, even if `run` panics (the plugin ABI turns
        // the panic into an error for this request).
        let mut state = self.states.take();
        self.run(&mut state, samples, language, threads)
    }

    fn run(
        &self,
        state: &mut WhisperState,
        samples: &[f32],
        language: Option<&str>,
        threads: usize,
    ) -> Result<Transcript, PluginError> {
        let mut padded;
        let samples = if samples.len() < MIN_SAMPLES {
            padded = samples.to_vec();
            padded.resize(MIN_SAMPLES, 0.0);
            &padded[..]
        } else {
            samples
        };
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(i32::try_from(threads.max(1)).unwrap_or(1));
        params.set_audio_ctx(if self.full_window {
            0
        } else {
            audio_ctx(samples.len())
        });
        let language = match (language, &self.detector) {
            (Some(code), _) => code.to_string(),
            (None, Some(detector)) => detect(detector, samples, threads)?,
            (None, None) => "en".to_string(),
        };
        params.set_language(Some(&language));
        params.set_translate(false);
        params.set_no_context(true);
        params.set_suppress_blank(true);
        params.set_suppress_nst(true);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        state
            .full(params, samples)
            .map_err(|e| PluginError::internal(format!("Whisper failed: {e}")))?;

        let mut segments = Vec::new();
        for segment in state.as_iter() {
            let text = segment
                .to_str_lossy()
                .map_err(|e| PluginError::internal(format!("Whisper segment text: {e}")))?
                .trim()
                .to_string();
            if text.is_empty() || is_annotation(&text) {
                continue;
            }
            segments.push(Segment {
                // Whisper counts in centiseconds.
                start_s: segment.start_timestamp() as f32 / 100.0,
                end_s: segment.end_timestamp() as f32 / 100.0,
                text,
            });
        }
        let text = segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Transcript {
            text,
            segments,
            language,
        })
    }
}

/// The language of `samples` (one encoder pass on the full window, one decoder step).
fn detect(
    detector: &Mutex<WhisperState>,
    samples: &[f32],
    threads: usize,
) -> Result<String, PluginError> {
    // A panic while detecting poisons the lock but leaves the state usable (every
    // detection starts afresh): keep detecting rather than fail every later request.
    let mut state = detector.lock().unwrap_or_else(PoisonError::into_inner);
    let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
    params.set_n_threads(i32::try_from(threads.max(1)).unwrap_or(1));
    params.set_language(Some("auto"));
    params.set_detect_language(true);
    params.set_print_progress(false);
    params.set_print_realtime(false);
    state
        .full(params, samples)
        .map_err(|e| PluginError::internal(format!("Whisper language detection failed: {e}")))?;
    whisper_rs::get_lang_str(state.full_lang_id_from_state())
        .map(str::to_string)
        .ok_or_else(|| PluginError::internal("Whisper detected no known language"))
}

/// Encoder positions for a clip: in proportion to its length (whisper.cpp otherwise
/// encodes a full 30 s window for any clip), or the full window for long clips.
pub fn audio_ctx(samples: usize) -> i32 {
    let seconds = samples as f64 / f64::from(WHISPER_RATE);
    let positions = (seconds * POSITIONS_PER_SECOND).ceil() as usize + AUDIO_CTX_MARGIN;
    if positions >= FULL_WINDOW {
        0
    } else {
        positions as i32
    }
}

/// Whisper writes sounds it cannot transcribe as "[Music]", "(wind blowing)" and the
/// like: they are not words the person said.
fn is_annotation(text: &str) -> bool {
    (text.starts_with('[') && text.ends_with(']')) || (text.starts_with('(') && text.ends_with(')'))
}
