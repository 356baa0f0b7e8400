//! Fundamental frequency by YIN (de Cheveigné & Kawahara, 2002): the cumulative mean
//! normalised difference function, an absolute threshold, parabolic interpolation.

/// Lowest and highest F0 searched: covers adult and child speech.
pub const MIN_F0_HZ: f32 = 60.0;
pub const MAX_F0_HZ: f32 = 500.0;
/// YIN's absolute threshold: a dip below it is a period.
const THRESHOLD: f32 = 0.15;

/// The integration window and the most lag YIN needs at `rate`.
pub fn frame_len(rate: u32) -> usize {
    window(rate) + max_lag(rate)
}

fn window(rate: u32) -> usize {
    (rate as usize * 25) / 1000
}

fn max_lag(rate: u32) -> usize {
    (rate as f32 / MIN_F0_HZ).ceil() as usize
}

/// F0 of one frame of `frame_len(rate)` samples, or `None` when it is unvoiced.
pub fn yin(frame: &[f32], rate: u32) -> Option<f32> {
    let w = window(rate);
    let lag_max = max_lag(rate);
    let lag_min = (rate as f32 / MAX_F0_HZ).floor() as usize;
    if frame.len() < w + lag_max || lag_min < 2 {
        return None;
    }
    // d(tau) = sum_j (x_j - x_{j+tau})^2, then d'(tau) = d(tau) * tau / sum_{k<=tau} d(k).
    let mut cmnd = vec![1.0f32; lag_max + 1];
    let mut running = 0.0f32;
    for tau in 1..=lag_max {
        let d = squared_distance(&frame[..w], &frame[tau..tau + w]);
        running += d;
        cmnd[tau] = if running > 0.0 {
            d * tau as f32 / running
        } else {
            1.0
        };
    }
    let mut tau = lag_min;
    while tau < lag_max {
        if cmnd[tau] < THRESHOLD {
            // Walk down to the bottom of this dip.
            while tau + 1 < lag_max && cmnd[tau + 1] < cmnd[tau] {
                tau += 1;
            }
            let (a, b, c) = (cmnd[tau - 1], cmnd[tau], cmnd[tau + 1]);
            let denom = a - 2.0 * b + c;
            let shift = if denom.abs() > f32::EPSILON {
                0.5 * (a - c) / denom
            } else {
                0.0
            };
            return Some(rate as f32 / (tau as f32 + shift.clamp(-1.0, 1.0)));
        }
        tau += 1;
    }
    None
}

/// Sum of squared differences, in eight independent lanes: a float sum in one lane
/// cannot be vectorised (its order is fixed), eight can, and this loop is where YIN
/// spends its time.
fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            let d = x[i] - y[i];
            lanes[i] += d * d;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f32, rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| 0.5 * (std::f32::consts::TAU * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn finds_a_pure_tone() {
        for freq in [80.0, 110.0, 220.0, 330.0, 440.0] {
            let f0 = yin(&tone(freq, 16_000, frame_len(16_000)), 16_000).expect("voiced");
            assert!((f0 - freq).abs() < freq * 0.01, "{freq} Hz read as {f0}");
        }
    }

    #[test]
    fn finds_the_fundamental_under_harmonics() {
        let n = frame_len(16_000);
        let f = |k: f32| tone(150.0 * k, 16_000, n);
        let (a, b, c) = (f(1.0), f(2.0), f(3.0));
        let mix: Vec<f32> = (0..n).map(|i| a[i] + 0.6 * b[i] + 0.3 * c[i]).collect();
        let f0 = yin(&mix, 16_000).expect("voiced");
        assert!((f0 - 150.0).abs() < 2.0, "{f0}");
    }

    #[test]
    fn silence_and_noise_are_unvoiced() {
        assert_eq!(yin(&vec![0.0; frame_len(16_000)], 16_000), None);
        // A deterministic white-ish noise (xorshift): no period.
        let mut s = 0x1234_5678u32;
        let noise: Vec<f32> = (0..frame_len(16_000))
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                s as f32 / u32::MAX as f32 - 0.5
            })
            .collect();
        assert_eq!(yin(&noise, 16_000), None);
    }
}
