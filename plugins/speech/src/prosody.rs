//! Prosody: how something was said, from the 16 kHz waveform and the transcript's
//! segment timestamps. Frames are 25 ms windows every 10 ms.

use empathy_proto::v1::Segment;

use crate::pitch;
use crate::resample::WHISPER_RATE;

/// The prosody vector, in this order (`EncodeOutput.embedding`; each also in `features`
/// by name). Raw values: the fusion model standardises them with statistics stored in
/// its checkpoint.
pub const PROSODY_FEATURES: &[&str] = &[
    // Clip length in seconds.
    "duration_s",
    // F0 over voiced frames (0 when nothing is voiced): mean, standard deviation, and
    // the 5th-95th percentile range (robust to octave errors at the extremes).
    "pitch_mean_hz",
    "pitch_std_hz",
    "pitch_range_hz",
    // Frame RMS in dBFS over speech frames: mean and standard deviation.
    "energy_mean_db",
    "energy_std_db",
    // Words per second of the transcript's segments (0 without words).
    "speaking_rate_wps",
    // Share of frames between the first and last speech frame that are silent.
    "pause_ratio",
    // Share of all frames with a pitch.
    "voiced_ratio",
];

const HOP: usize = WHISPER_RATE as usize / 100;
const WINDOW: usize = WHISPER_RATE as usize * 25 / 1000;
/// Frames quieter than this (dBFS) are never speech; silence reads as this.
const FLOOR_DB: f32 = -60.0;
/// Frames more than this below the loudest frame are background, not speech.
const DYNAMIC_RANGE_DB: f32 = 35.0;
/// Less speech than this (100 ms) is not worth transcribing: Whisper would only
/// hallucinate on it.
const MIN_SPEECH_FRAMES: usize = 10;

/// Per-frame loudness and a speech/non-speech decision by energy.
#[derive(Debug, Clone)]
pub struct Activity {
    pub db: Vec<f32>,
    pub speech: Vec<bool>,
}

impl Activity {
    pub fn of(samples: &[f32]) -> Self {
        let frames = samples.len().div_ceil(HOP);
        let db: Vec<f32> = (0..frames)
            .map(|i| {
                let frame = &samples[i * HOP..(i * HOP + WINDOW).min(samples.len())];
                let power = frame.iter().map(|v| v * v).sum::<f32>() / frame.len().max(1) as f32;
                (10.0 * power.max(1e-12).log10()).max(FLOOR_DB)
            })
            .collect();
        let loudest = db.iter().copied().fold(FLOOR_DB, f32::max);
        let gate = (loudest - DYNAMIC_RANGE_DB).max(FLOOR_DB + 15.0);
        let speech = db.iter().map(|&d| d > gate).collect();
        Self { db, speech }
    }

    pub fn has_speech(&self) -> bool {
        self.speech.iter().filter(|&&s| s).count() >= MIN_SPEECH_FRAMES
    }
}

/// The prosody vector of a 16 kHz clip, in [`PROSODY_FEATURES`] order.
pub fn features(samples: &[f32], activity: &Activity, segments: &[Segment]) -> Vec<f32> {
    let duration = samples.len() as f32 / WHISPER_RATE as f32;
    let frame_len = pitch::frame_len(WHISPER_RATE);
    // Only speech frames can be voiced; skipping the rest also saves most of YIN's work.
    let f0: Vec<f32> = activity
        .speech
        .iter()
        .enumerate()
        .filter(|(_, s)| **s)
        .filter_map(|(i, _)| samples.get(i * HOP..i * HOP + frame_len))
        .filter_map(|frame| pitch::yin(frame, WHISPER_RATE))
        .collect();
    let (pitch_mean, pitch_std) = mean_std(&f0);
    let pitch_range = percentile(&f0, 0.95) - percentile(&f0, 0.05);

    let speech_db: Vec<f32> = activity
        .db
        .iter()
        .zip(&activity.speech)
        .filter(|(_, s)| **s)
        .map(|(d, _)| *d)
        .collect();
    let (energy_mean, energy_std) = if speech_db.is_empty() {
        mean_std(&activity.db)
    } else {
        mean_std(&speech_db)
    };

    let first = activity.speech.iter().position(|&s| s);
    let last = activity.speech.iter().rposition(|&s| s);
    let pause_ratio = match (first, last) {
        (Some(a), Some(b)) => {
            let span = &activity.speech[a..=b];
            span.iter().filter(|s| !**s).count() as f32 / span.len() as f32
        }
        _ => 0.0,
    };
    let frames = activity.speech.len().max(1) as f32;
    vec![
        duration,
        pitch_mean,
        pitch_std,
        pitch_range,
        energy_mean,
        energy_std,
        speaking_rate(segments, duration),
        pause_ratio,
        f0.len() as f32 / frames,
    ]
}

/// Words over the time the segments span (each clamped to the clip).
fn speaking_rate(segments: &[Segment], duration: f32) -> f32 {
    let words: usize = segments
        .iter()
        .map(|s| s.text.split_whitespace().count())
        .sum();
    let seconds: f32 = segments
        .iter()
        .map(|s| (s.end_s.min(duration) - s.start_s.max(0.0)).max(0.0))
        .sum();
    if words == 0 || seconds <= 0.0 {
        0.0
    } else {
        words as f32 / seconds
    }
}

fn mean_std(x: &[f32]) -> (f32, f32) {
    if x.is_empty() {
        return (0.0, 0.0);
    }
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, var.sqrt())
}

fn percentile(x: &[f32], q: f32) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    let mut sorted = x.to_vec();
    sorted.sort_by(f32::total_cmp);
    sorted[((sorted.len() - 1) as f32 * q).round() as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feature(v: &[f32], name: &str) -> f32 {
        v[PROSODY_FEATURES
            .iter()
            .position(|n| *n == name)
            .expect("known feature")]
    }

    fn tone(freq: f32, seconds: f32) -> Vec<f32> {
        (0..(16_000.0 * seconds) as usize)
            .map(|i| 0.3 * (std::f32::consts::TAU * freq * i as f32 / 16_000.0).sin())
            .collect()
    }

    #[test]
    fn a_220_hz_tone_has_220_hz_pitch() {
        let x = tone(220.0, 1.0);
        let activity = Activity::of(&x);
        assert!(activity.has_speech());
        let v = features(&x, &activity, &[]);
        assert_eq!(v.len(), PROSODY_FEATURES.len());
        assert!((feature(&v, "pitch_mean_hz") - 220.0).abs() < 2.0, "{v:?}");
        assert!(feature(&v, "pitch_std_hz") < 1.0, "{v:?}");
        assert!(feature(&v, "voiced_ratio") > 0.9, "{v:?}");
        assert!((feature(&v, "duration_s") - 1.0).abs() < 1e-3);
        // 0.3 amplitude sine: RMS 0.212 = -13.5 dBFS.
        assert!((feature(&v, "energy_mean_db") + 13.5).abs() < 0.5, "{v:?}");
    }

    #[test]
    fn silence_has_no_pitch_and_no_speech() {
        let x = vec![0.0; 16_000];
        let activity = Activity::of(&x);
        assert!(!activity.has_speech());
        let v = features(&x, &activity, &[]);
        assert_eq!(feature(&v, "pitch_mean_hz"), 0.0);
        assert_eq!(feature(&v, "voiced_ratio"), 0.0);
        assert_eq!(feature(&v, "speaking_rate_wps"), 0.0);
    }

    #[test]
    fn pauses_and_rate() {
        // Tone, silence, tone: a third of the span is a pause.
        let mut x = tone(200.0, 0.5);
        x.extend(vec![0.0; 8_000]);
        x.extend(tone(200.0, 0.5));
        let activity = Activity::of(&x);
        let segments = [Segment {
            start_s: 0.0,
            end_s: 1.5,
            text: "one two three".into(),
        }];
        let v = features(&x, &activity, &segments);
        assert!(
            (feature(&v, "pause_ratio") - 1.0 / 3.0).abs() < 0.03,
            "{v:?}"
        );
        assert!(
            (feature(&v, "speaking_rate_wps") - 2.0).abs() < 1e-3,
            "{v:?}"
        );
    }
}
