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
            // "No format reader found" adds nothing; a damaged header's reason does.
            let why = match e {
                SymphoniaError::Unsupported(_) => String::new(),
                other => format!(": {}", reason(&other)),
            };
            invalid(format!(
                "not a recognised audio file (WAV, FLAC, MP3 or OGG/Vorbis expected; {PCM_MIME} for raw 16 kHz PCM){why}"
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
    finite_and_clipped(&mut samples)?;
    Ok(Audio {
        samples,
        sample_rate,
    })
}

/// Floating-point files can hold any bit pattern: NaN or infinity is a damaged file
/// (it would poison every later FFT), and a finite sample past full scale is clipped
/// to ±1 as a player would, so no sum downstream overflows.
fn finite_and_clipped(samples: &mut [f32]) -> Result<(), PluginError> {
    if let Some(at) = samples.iter().position(|v| !v.is_finite()) {
        return Err(invalid(format!(
            "the audio is damaged: sample {at} is not a number (NaN or infinite)"
        )));
    }
    for v in samples {
        *v = v.clamp(-1.0, 1.0);
    }
    Ok(())
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

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use std::process::Command;

    use empathy_plugin_api::ErrorKind;

    use super::*;

    /// Sample encodings a WAV file can hold.
    #[derive(Clone, Copy, Debug)]
    pub(super) enum Wav {
        U8,
        I16,
        I24,
        I32,
        F32,
    }

    /// A 0.5-amplitude 440 Hz tone as a WAV file, the same on every channel.
    pub(super) fn wav(kind: Wav, rate: u32, channels: u16, seconds: f32) -> Vec<u8> {
        let frames = (rate as f32 * seconds) as usize;
        let (bits, format): (u16, u16) = match kind {
            Wav::U8 => (8, 1),
            Wav::I16 => (16, 1),
            Wav::I24 => (24, 1),
            Wav::I32 => (32, 1),
            Wav::F32 => (32, 3),
        };
        let mut data = Vec::new();
        for i in 0..frames {
            let v = 0.5 * (std::f32::consts::TAU * 440.0 * i as f32 / rate as f32).sin();
            for _ in 0..channels {
                match kind {
                    Wav::U8 => data.push((128.0 + v * 127.0) as u8),
                    Wav::I16 => data.extend(((v * 32767.0) as i16).to_le_bytes()),
                    Wav::I24 => data.extend(&((v * 8_388_607.0) as i32).to_le_bytes()[..3]),
                    Wav::I32 => data.extend(((v * 2_147_483_647.0) as i32).to_le_bytes()),
                    Wav::F32 => data.extend(v.to_le_bytes()),
                }
            }
        }
        let block = channels * bits / 8;
        let mut out = b"RIFF".to_vec();
        out.extend((36 + data.len() as u32).to_le_bytes());
        out.extend(b"WAVEfmt ");
        out.extend(16u32.to_le_bytes());
        out.extend(format.to_le_bytes());
        out.extend(channels.to_le_bytes());
        out.extend(rate.to_le_bytes());
        out.extend((rate * u32::from(block)).to_le_bytes());
        out.extend(block.to_le_bytes());
        out.extend(bits.to_le_bytes());
        out.extend(b"data");
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
        out
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
    }

    fn refused(bytes: &[u8], mime: &str, max_seconds: f64) -> String {
        match decode(bytes, mime, max_seconds) {
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::InvalidInput, "{}", e.message);
                e.message
            }
            Ok(a) => panic!("accepted {} samples", a.samples.len()),
        }
    }

    #[test]
    fn decodes_every_wav_sample_format() {
        for kind in [Wav::U8, Wav::I16, Wav::I24, Wav::I32, Wav::F32] {
            for (rate, channels) in [(8_000, 1), (44_100, 2), (48_000, 6)] {
                let audio = decode(&wav(kind, rate, channels, 0.5), "", 60.0)
                    .unwrap_or_else(|e| panic!("{kind:?} {rate} Hz x{channels}: {e}"));
                assert_eq!(audio.sample_rate, rate);
                assert_eq!(audio.samples.len(), rate as usize / 2, "{kind:?}");
                // A 0.5 sine has RMS 0.354, whatever the encoding and channel count.
                assert!(
                    (rms(&audio.samples) - 0.354).abs() < 0.01,
                    "{kind:?}: rms {}",
                    rms(&audio.samples)
                );
            }
        }
    }

    /// `wav` converted by sox into another container (`args` choose the encoding).
    fn sox(wav_bytes: &[u8], ext: &str, args: &[&str]) -> Vec<u8> {
        let dir = std::env::temp_dir().join(format!("speech-decode-{}-{ext}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (input, output) = (dir.join("in.wav"), dir.join(format!("out.{ext}")));
        std::fs::write(&input, wav_bytes).expect("write wav");
        let status = Command::new("sox")
            .arg(&input)
            .args(args)
            .arg(&output)
            .status()
            .expect("sox runs (scripts/setup installs it)");
        assert!(status.success(), "sox could not write .{ext}");
        let bytes = std::fs::read(&output).expect("sox output");
        let _ = std::fs::remove_dir_all(&dir);
        bytes
    }

    #[test]
    fn decodes_flac_mp3_and_ogg_vorbis() {
        let source = wav(Wav::I16, 44_100, 2, 1.0);
        for (ext, mime) in [
            ("flac", "audio/flac"),
            ("mp3", "audio/mpeg"),
            ("ogg", "audio/ogg"),
            ("mp3", ""),
        ] {
            let audio = decode(&sox(&source, ext, &[]), mime, 60.0)
                .unwrap_or_else(|e| panic!("{ext}: {e}"));
            assert_eq!(audio.sample_rate, 44_100, "{ext}");
            // Lossy codecs add priming frames; the length is within 0.1 s.
            let seconds = audio.samples.len() as f32 / 44_100.0;
            assert!((seconds - 1.0).abs() < 0.1, "{ext}: {seconds} s");
            assert!(
                (rms(&audio.samples) - 0.354).abs() < 0.03,
                "{ext}: rms {}",
                rms(&audio.samples)
            );
        }
    }

    #[test]
    fn raw_pcm_when_the_caller_says_so() {
        let bytes: Vec<u8> = [0i16, 16384, -16384, 32767]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let audio = decode(&bytes, "audio/pcm; rate=16000", 60.0).expect("pcm");
        assert_eq!(audio.sample_rate, 16_000);
        assert_eq!(audio.samples[1], 0.5);
        assert!(refused(&bytes[..3], "audio/pcm", 60.0).contains("odd"));
        // Without the MIME type, raw PCM is not guessed at.
        assert!(refused(&bytes, "", 60.0).contains("not a recognised audio file"));
    }

    #[test]
    fn refuses_bad_input_with_a_reason() {
        let good = wav(Wav::I16, 16_000, 1, 1.0);
        assert!(refused(&[], "audio/wav", 60.0).contains("empty"));
        assert!(
            refused(b"hello, this is text and not a sound", "", 60.0)
                .contains("not a recognised audio file")
        );
        let message = refused(&good[..good.len() / 2], "audio/wav", 60.0);
        assert!(message.contains("truncated"), "{message}");
        assert!(refused(&good[..30], "audio/wav", 60.0).contains("not a recognised"));
        let message = refused(&good, "audio/wav", 0.5);
        assert!(
            message.contains("limit of 0.5 s") && message.contains("max_duration_s"),
            "{message}"
        );
        let message = refused(&vec![0; 64_000], "audio/pcm", 1.0);
        assert!(message.contains("2.0 s long"), "{message}");
        for rate in [1_000, 1_000_000] {
            let message = refused(&wav(Wav::I16, rate, 1, 0.01), "", 60.0);
            assert!(
                message.contains(&format!("{rate} Hz is not supported")),
                "{message}"
            );
        }
    }

    #[test]
    fn refuses_non_numbers_and_clips_loud_float_samples() {
        let good = wav(Wav::F32, 44_100, 1, 0.1);
        let sample = |i: usize| 44 + 4 * i;
        let mut nan = good.clone();
        nan[sample(7)..sample(8)].copy_from_slice(&f32::NAN.to_le_bytes());
        let message = refused(&nan, "audio/wav", 60.0);
        assert!(message.contains("sample 7 is not a number"), "{message}");

        let mut loud = good;
        loud[sample(3)..sample(4)].copy_from_slice(&1e30f32.to_le_bytes());
        let audio = decode(&loud, "audio/wav", 60.0).expect("decodes");
        assert_eq!(audio.samples[3], 1.0);
        let resampled = crate::resample::to_16k(&audio.samples, 44_100).expect("resamples");
        assert!(resampled.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn refuses_an_unsupported_codec() {
        // Microsoft ADPCM in a WAV: a real codec this build does not decode.
        let adpcm = sox(&wav(Wav::I16, 8_000, 1, 0.5), "wav", &["-e", "ms-adpcm"]);
        let message = refused(&adpcm, "audio/wav", 60.0);
        assert!(message.contains("codec is not supported"), "{message}");
    }
}
