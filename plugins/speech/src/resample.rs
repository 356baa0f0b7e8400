//! Resampling to Whisper's 16 kHz with rubato's FFT resampler: a proper anti-aliasing
//! filter, not dropped or repeated samples.

use empathy_plugin_api::PluginError;
use rubato::{FftFixedIn, Resampler};

pub const WHISPER_RATE: u32 = 16_000;
const CHUNK: usize = 1024;

/// `samples` at `rate` Hz, as 16 kHz samples of the same duration.
pub fn to_16k(samples: &[f32], rate: u32) -> Result<Vec<f32>, PluginError> {
    if rate == WHISPER_RATE || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let internal = |e: &dyn std::fmt::Display| {
        PluginError::internal(format!("resampling from {rate} Hz: {e}"))
    };
    let mut resampler = FftFixedIn::<f32>::new(rate as usize, WHISPER_RATE as usize, CHUNK, 2, 1)
        .map_err(|e| internal(&e))?;
    let wanted =
        (samples.len() as u64 * u64::from(WHISPER_RATE)).div_ceil(u64::from(rate)) as usize;
    let delay = resampler.output_delay();
    let mut out = Vec::with_capacity(wanted + delay + CHUNK);
    let mut rest = samples;
    while rest.len() >= resampler.input_frames_next() {
        let (chunk, tail) = rest.split_at(resampler.input_frames_next());
        out.extend_from_slice(
            &resampler
                .process(&[chunk], None)
                .map_err(|e| internal(&e))?[0],
        );
        rest = tail;
    }
    if !rest.is_empty() {
        out.extend_from_slice(
            &resampler
                .process_partial(Some(&[rest]), None)
                .map_err(|e| internal(&e))?[0],
        );
    }
    // Flush the filter's delay line so the end of the clip comes out too. The FFT
    // block may swallow several calls before it answers, so empty output is not the
    // end; what it can hold is bounded by two seconds of input plus the delay.
    let mut fed = 0usize;
    let bound = 2 * rate as usize + delay * rate as usize / WHISPER_RATE as usize;
    while out.len() < wanted + delay && fed <= bound {
        fed += resampler.input_frames_next();
        let flushed = resampler
            .process_partial::<&[f32]>(None, None)
            .map_err(|e| internal(&e))?;
        out.extend_from_slice(&flushed[0]);
    }
    let end = (wanted + delay).min(out.len());
    Ok(out[delay.min(end)..end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f32, rate: u32, seconds: f32) -> Vec<f32> {
        (0..(rate as f32 * seconds) as usize)
            .map(|i| (std::f32::consts::TAU * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    /// Correlation of `x` with a unit sine of `freq` at 16 kHz: ~0.5 for the same tone.
    fn power_at(x: &[f32], freq: f32) -> f32 {
        let (mut re, mut im) = (0.0f32, 0.0f32);
        for (i, v) in x.iter().enumerate() {
            let phase = std::f32::consts::TAU * freq * i as f32 / 16_000.0;
            re += v * phase.cos();
            im += v * phase.sin();
        }
        (re * re + im * im).sqrt() / x.len() as f32
    }

    #[test]
    fn keeps_duration_and_pitch() {
        for rate in [8_000, 22_050, 44_100, 48_000, 44_101] {
            let out = to_16k(&tone(440.0, rate, 1.0), rate).expect("resamples");
            assert!(
                (out.len() as i64 - 16_000).abs() <= 1,
                "{rate}: {} samples",
                out.len()
            );
            let p = power_at(&out[1000..15000], 440.0);
            assert!(p > 0.45, "{rate}: 440 Hz lost ({p})");
        }
    }

    #[test]
    fn filters_what_16k_cannot_hold() {
        // 12 kHz is above the 8 kHz Nyquist limit: it must vanish, not fold to 4 kHz.
        let out = to_16k(&tone(12_000.0, 48_000, 0.5), 48_000).expect("resamples");
        let rms = (out.iter().map(|v| v * v).sum::<f32>() / out.len() as f32).sqrt();
        assert!(rms < 0.01, "aliasing: rms {rms}");
    }
}
