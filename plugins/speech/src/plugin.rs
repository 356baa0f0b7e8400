//! The speech modality as an empathy plugin: request checks, decoding, transcription
//! and prosody for each clip.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use empathy_plugin_api::{Plugin, PluginError, Settings, check_request};
use empathy_proto::modality;
use empathy_proto::v1::{
    EncodeInput, EncodeOutput, EncodeRequest, EncodeResponse, ModalityInfo, ModelRef, PluginConfig,
    encode_input::Payload,
};
use sha2::{Digest, Sha256};

use crate::decode::decode;
use crate::prosody::{self, Activity, PROSODY_FEATURES};
use crate::resample::to_16k;
use crate::transcribe::{Transcriber, Transcript, WhisperModel};

/// Where the converted models live under `PluginConfig.assets_dir`.
pub const MODEL_SUBDIR: &str = "speech";

const SETTINGS: [&str; 7] = [
    "model",
    "window",
    "model_dir",
    "max_concurrent",
    "max_duration_s",
    "max_input_bytes",
    "max_batch",
];

/// Request limits and parallelism, from `PluginConfig.settings`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limits {
    /// Clips transcribed at once (each holds a Whisper state).
    pub max_concurrent: usize,
    pub max_duration_s: f64,
    pub max_input_bytes: usize,
    pub max_batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent: 2,
            max_duration_s: 60.0,
            // A minute of 48 kHz stereo 32-bit WAV is 23 MB.
            max_input_bytes: 32 << 20,
            max_batch: 16,
        }
    }
}

impl Limits {
    fn from_settings(s: &Settings) -> Result<Self, PluginError> {
        let d = Self::default();
        Ok(Self {
            max_concurrent: s.positive("max_concurrent", d.max_concurrent)?,
            max_duration_s: s.positive("max_duration_s", d.max_duration_s)?,
            max_input_bytes: s.positive("max_input_bytes", d.max_input_bytes)?,
            max_batch: s.positive("max_batch", d.max_batch)?,
        })
    }

    /// The audio bytes and MIME type of each input of a valid request.
    fn validate<'r>(
        &self,
        request: &'r EncodeRequest,
    ) -> Result<Vec<(&'r [u8], &'r str)>, PluginError> {
        check_request(request, modality::SPEECH, self.max_batch, "clips")?;
        request
            .inputs
            .iter()
            .enumerate()
            .map(|(i, input)| self.check_input(input).map_err(|e| named(i, e)))
            .collect()
    }

    fn check_input<'r>(&self, input: &'r EncodeInput) -> Result<(&'r [u8], &'r str), PluginError> {
        match &input.payload {
            Some(Payload::Data(bytes)) if bytes.len() > self.max_input_bytes => {
                Err(PluginError::invalid_input(format!(
                    "the audio is {} bytes, over the limit of {} bytes (setting max_input_bytes)",
                    bytes.len(),
                    self.max_input_bytes
                )))
            }
            Some(Payload::Data(bytes)) => Ok((bytes.as_ref(), &input.mime_type)),
            Some(Payload::Text(_)) => {
                Err(PluginError::invalid_input("expected audio bytes, got text"))
            }
            None => Err(PluginError::invalid_input("no audio given")),
        }
    }
}

/// Prefixes the input's position to an error, so a caller of a batch knows which clip.
fn named(i: usize, e: PluginError) -> PluginError {
    PluginError::new(e.kind, format!("input {i}: {}", e.message))
}

/// The `speech` modality: Whisper transcript, segments, language, and prosody.
pub struct SpeechPlugin {
    transcriber: Transcriber,
    limits: Limits,
    threads: usize,
    version: String,
}

impl SpeechPlugin {
    fn model_ref(&self) -> ModelRef {
        ModelRef {
            id: self.transcriber.model().id().to_string(),
            version: self.version.clone(),
        }
    }

    /// One clip: decode, resample, transcribe when there is speech, measure prosody.
    fn encode_one(
        &self,
        bytes: &[u8],
        mime: &str,
        language: Option<&str>,
        threads: usize,
    ) -> Result<EncodeOutput, PluginError> {
        let audio = decode(bytes, mime, self.limits.max_duration_s)?;
        let samples = to_16k(&audio.samples, audio.sample_rate)?;
        let activity = Activity::of(&samples);
        // No speech is a result, not an error; Whisper is not asked, as it would
        // hallucinate words into silence.
        let transcript = if activity.has_speech() {
            self.transcriber.transcribe(&samples, language, threads)?
        } else {
            Transcript {
                language: language.unwrap_or("").to_string(),
                ..Transcript::default()
            }
        };
        let embedding = prosody::features(&samples, &activity, &transcript.segments);
        Ok(EncodeOutput {
            features: PROSODY_FEATURES
                .iter()
                .map(|n| n.to_string())
                .zip(embedding.iter().copied())
                .collect(),
            embedding,
            transcript: transcript.text,
            segments: transcript.segments,
            detected_language: transcript.language,
            ..EncodeOutput::default()
        })
    }
}

impl Plugin for SpeechPlugin {
    fn create(config: &PluginConfig) -> Result<Self, PluginError> {
        let settings = Settings::new("speech", &config.settings, &SETTINGS)?;
        let limits = Limits::from_settings(&settings)?;
        let name = settings.get("model").unwrap_or("tiny.en");
        let model = WhisperModel::parse(name).ok_or_else(|| {
            PluginError::invalid_input(format!(
                "setting model={name:?}: expected one of {}",
                WhisperModel::NAMES
            ))
        })?;
        let dir = match settings.get("model_dir") {
            Some(dir) => PathBuf::from(dir),
            None => Path::new(&config.assets_dir).join(MODEL_SUBDIR),
        };
        let path = dir.join(model.file_name());
        let version = file_version(&path)?;
        // "fit" encodes only as much of Whisper's 30 s window as the clip fills.
        let full_window = match settings.get("window").unwrap_or("fit") {
            "fit" => false,
            "full" => true,
            other => {
                return Err(PluginError::invalid_input(format!(
                    "setting window={other:?}: expected fit or full"
                )));
            }
        };
        let transcriber = Transcriber::load(&path, model, limits.max_concurrent, full_window)?;
        let threads = match config.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n as usize,
        };
        Ok(Self {
            transcriber,
            limits,
            threads,
            version,
        })
    }

    fn info(&self) -> Vec<ModalityInfo> {
        vec![ModalityInfo {
            modality: modality::SPEECH.to_string(),
            embedding_dim: PROSODY_FEATURES.len() as u32,
            model: Some(self.model_ref()),
            max_batch: u32::try_from(self.limits.max_batch).unwrap_or(u32::MAX),
            max_input_size: self.limits.max_input_bytes as u64,
            plugin: concat!(env!("CARGO_PKG_NAME"), " ", env!("CARGO_PKG_VERSION")).to_string(),
        }]
    }

    fn encode(&self, request: EncodeRequest) -> Result<EncodeResponse, PluginError> {
        let clips = self.limits.validate(&request)?;
        let language = self.transcriber.language(&request.language)?;
        // Clips run side by side up to max_concurrent, sharing the cores between them.
        let workers = clips.len().min(self.limits.max_concurrent).max(1);
        let threads = (self.threads / workers).max(1);
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<EncodeOutput, PluginError>>>> =
            Mutex::new((0..clips.len()).map(|_| None).collect());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((bytes, mime)) = clips.get(i) else {
                            break;
                        };
                        let out = self
                            .encode_one(bytes, mime, language.as_deref(), threads)
                            .map_err(|e| named(i, e));
                        if let Ok(mut r) = results.lock() {
                            r[i] = Some(out);
                        }
                    }
                });
            }
        });
        let results = results
            .into_inner()
            .map_err(|_| PluginError::internal("a speech worker panicked"))?;
        let outputs = results
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or_else(|| Err(PluginError::internal(format!("input {i}: no result"))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EncodeResponse {
            outputs,
            model: Some(self.model_ref()),
        })
    }
}

/// The model's version: the start of its file's sha256.
fn file_version(path: &Path) -> Result<String, PluginError> {
    let mut file = std::fs::File::open(path).map_err(|e| {
        PluginError::unavailable(format!(
            "the Whisper model {} cannot be opened ({e}): run `empathy assets fetch`",
            path.display()
        ))
    })?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .map_err(|e| PluginError::unavailable(format!("cannot read {}: {e}", path.display())))?;
    Ok(hex::encode(hasher.finalize())[..12].to_string())
}
