//! Any common audio container to mono f32 samples at the file's own rate, with
//! symphonia (WAV 8/16/24/32-bit integer and float, FLAC, MP3, OGG/Vorbis), or raw
//! 16 kHz mono s16le PCM when the caller says `audio/pcm`.

use std::io::Cursor;

use empathy_plugin_api::PluginError;
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Rates below this carry no intelligible speech; above it no real recorder writes.
pub const MIN_SAMPLE_RATE: u32 = 4_000;
pub const MAX_SAMPLE_RATE: u32 = 384_000;
/// The rate of raw `audio/pcm` input (and what Whisper needs).
pub const PCM_RATE: u32 = 16_000;
pub const PCM_MIME: &str = "audio/pcm";

/// Mono audio at its own sample rate.
#[derive(Debug, Clone)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

fn invalid(message: impl Into<String>) -> PluginError {
    PluginError::invalid_input(message)
}

fn too_long(seconds: f64, max_seconds: f64) -> PluginError {
    invalid(format!(
        "the audio is {seconds:.1} s long, over the limit of {max_seconds} s (setting max_duration_s)"
    ))
}

/// Decodes `bytes` and downmixes to mono. Refuses audio longer than `max_seconds`
/// without decoding all of it.
pub fn decode(bytes: &[u8], mime_type: &str, max_seconds: f64) -> Result<Audio, PluginError> {
    if bytes.is_empty() {
        return Err(invalid("the audio is empty (0 bytes)"));
    }
    let mime = mime_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == PCM_MIME {
        return decode_pcm(bytes, max_seconds);
    }
    decode_container(bytes, &mime, max_seconds)
}

fn decode_pcm(bytes: &[u8], max_seconds: f64) -> Result<Audio, PluginError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(invalid(format!(
            "{PCM_MIME} must be 16-bit samples, but {} bytes is an odd count",
            bytes.len()
        )));
    }
    let seconds = (bytes.len() / 2) as f64 / f64::from(PCM_RATE);
    if seconds > max_seconds {
        return Err(too_long(seconds, max_seconds));
    }
    let samples = bytes
        .chunks_exact(2)
        .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0)
        .collect();
    Ok(Audio {
        samples,
        sample_rate: PCM_RATE,
    })
}

fn decode_container(bytes: &[u8], mime: &str, max_seconds: f64) -> Result<Audio, PluginError> {
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let mut hint = Hint::new();
    if !mime.is_empty() {
        hint.mime_type(mime);
    }
    let probed = symphonia::default::get_probe()
        .format(&hint, source, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| {
            invalid(format!(
                "not a recognised audio file (WAV, FLAC, MP3 or OGG/Vorbis expected; {PCM_MIME} for raw 16 kHz PCM): {}",
                reason(&e)
            ))
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| invalid("the file has no audio track"))?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    let sample_rate = params
        .sample_rate
        .ok_or_else(|| invalid("the audio track does not say its sample rate"))?;
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&sample_rate) {
        return Err(invalid(format!(
            "a sample rate of {sample_rate} Hz is not supported (accepted: {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)"
        )));
    }
    if let Some(frames) = params.n_frames {
        let seconds = frames as f64 / f64::from(sample_rate);
        if seconds > max_seconds {
            return Err(too_long(seconds, max_seconds));
        }
    }
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| invalid(format!("the audio codec is not supported: {}", reason(&e))))?;

    let max_frames = (max_seconds * f64::from(sample_rate)).ceil() as usize;
    let mut samples = Vec::new();
    let mut buffer: Option<SampleBuffer<f32>> = None;
    let mut damaged = 0usize;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(e) => {
                tracing::debug!(error = %e, "audio stream stopped early");
                break;
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A damaged packet: drop it, as players do.
            Err(SymphoniaError::DecodeError(_)) => {
                damaged += 1;
                continue;
            }
            Err(e) => {
                return Err(invalid(format!(
                    "the audio cannot be decoded: {}",
                    reason(&e)
                )));
            }
        };
        let spec = *decoded.spec();
        let channels = spec.channels.count().max(1);
        let buf = match &mut buffer {
            Some(b) if b.capacity() >= decoded.capacity() * channels => b,
            slot => slot.insert(SampleBuffer::new(decoded.capacity() as u64, spec)),
        };
        buf.copy_interleaved_ref(decoded);
        samples.extend(
            buf.samples()
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() / channels as f32),
        );
        if samples.len() > max_frames {
            return Err(too_long(
                samples.len() as f64 / f64::from(sample_rate),
                max_seconds,
            ));
        }
    }
    if samples.is_empty() {
        return Err(invalid(format!(
            "the audio holds no decodable samples (empty, truncated or damaged file; {damaged} damaged packets)"
        )));
    }
    // Formats that state their length (WAV, FLAC) reveal a cut-off file; 10 ms of slack
    // covers codecs whose stated length is an estimate.
    if let Some(expected) = params.n_frames
        && (samples.len() as u64) + u64::from(sample_rate / 100) < expected
    {
        return Err(invalid(format!(
            "the audio file is truncated: its header promises {:.2} s, only {:.2} s are there",
            expected as f64 / f64::from(sample_rate),
            samples.len() as f64 / f64::from(sample_rate)
        )));
    }
    Ok(Audio {
        samples,
        sample_rate,
    })
}

/// Symphonia's error without its internal prefix noise.
fn reason(e: &SymphoniaError) -> String {
    match e {
        SymphoniaError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the data ends early".to_string()
        }
        other => other.to_string(),
    }
}
