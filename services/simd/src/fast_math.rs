//! Elementwise maths as plain arithmetic the compiler vectorises (libm's scalar erf and
//! exp were 11% and 8% of the text encoder's time); `widest!` compiles the loops that
//! use them for the widest SIMD the CPU has.

/// erf as a rational function on [-4, 4] (outside, erf is +-1 in f32); the
/// coefficients are Eigen's and XLA's f32 erf. Pure arithmetic, so it vectorises.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    // Plain mul-add, not f32::mul_add: without FMA enabled at build time that is a libm call.
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    for c in [
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_600_1e-3,
        -1.609_603_3e-2,
    ] {
        p = x2 * p + c;
    }
    let mut q = x2 * -1.456_607_2e-5 - 2.133_740_6e-4;
    for c in [-1.682_827e-3, -7.373_329_2e-3, -1.426_474e-2] {
        q = x2 * q + c;
    }
    x * p / q
}

/// e^x to within 2 ulp for x in [-87, 88] (Cephes' expf: x = n ln2 + r, a degree-6
/// polynomial in r, 2^n from the exponent bits); below, about 1e-38 rather than 0.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    // ln 2 in two parts, so that r = x - n ln2 keeps its low bits.
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4;
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        p = p * r + c;
    }
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    (p * r * r + r + 1.0) * scale
}

#[cfg(test)]
mod tests {
    #[test]
    fn erf_matches_f64_erf() {
        let worst = (-6000..=6000)
            .map(|i| f64::from(i) / 1000.0)
            .map(|x| (f64::from(super::erf(x as f32)) - candle_core::cpu::erf::erf_f64(x)).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "max error {worst}");
    }

    #[test]
    fn exp_matches_f64_exp() {
        let worst = (-87_000..=88_000)
            .map(|i| i as f32 / 1000.0)
            .map(|x| {
                let want = f64::from(x).exp();
                (f64::from(super::exp(x)) - want).abs() / want
            })
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "max relative error {worst}");
        assert_eq!(super::exp(0.0), 1.0);
        assert!(super::exp(f32::NEG_INFINITY) < 1e-37);
    }
}
