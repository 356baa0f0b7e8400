//! The speech modality plugin: audio in any common container is decoded (symphonia),
//! resampled to 16 kHz (rubato), transcribed by Whisper (whisper-rs) and measured for
//! prosody (pitch, energy, rate, pauses). The prosody vector is the modality's
//! embedding; the transcript goes on through the text path.

mod decode;
mod pitch;
mod plugin;
mod pool;
pub mod prosody;
mod resample;
mod transcribe;
pub mod wer;

pub use plugin::{MODEL_SUBDIR, SpeechPlugin};
pub use prosody::PROSODY_FEATURES;
pub use transcribe::audio_ctx;

empathy_plugin_api::export_plugin!(SpeechPlugin);
