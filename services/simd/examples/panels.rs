//! The panels' product beside candle's f32 matmul (gemm; what the meaning reader ran
//! before the panels, and still runs on CPUs without AVX2), on the meaning reader's
//! layer shapes at 40 rows (a short text and the question), in one process,
//! alternating: median microseconds of each, and of one whole layer, and the ratio.
//!
//!   cargo run --release -p empathy-simd --example panels

use std::time::Instant;

use candle_core::{Device, Module, Tensor, quantized::QMatMul};
use empathy_simd::panels::{self, Panels};

/// Gemma 3 270M's products (inputs, outputs, how many a layer has): q; k and v; o;
/// gate and up; down.
const SHAPES: [(usize, usize, usize); 5] = [
    (640, 1024, 1),
    (640, 256, 2),
    (1024, 640, 1),
    (640, 2048, 2),
    (2048, 640, 1),
];
const ROWS: usize = 40;
const REPEATS: usize = 41;

fn main() -> candle_core::Result<()> {
    if !panels::available() {
        println!("this CPU has no AVX2 and FMA: the reader uses candle's matmul here");
        return Ok(());
    }
    let threads = rayon::current_num_threads();
    println!("{ROWS} rows, {threads} threads; median of {REPEATS} of each, alternating");
    let (mut layer_candle, mut layer_panels) = (0.0, 0.0);
    for (k, n, count) in SHAPES {
        // Values that are not round, the same for both.
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i % 97) as f32 - 48.0) / 97.0)
            .collect();
        let x: Vec<f32> = (0..ROWS * k)
            .map(|i| ((i % 89) as f32 - 44.0) / 89.0)
            .collect();
        let w_t: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
        let packed = Panels::new(&w_t, k, n);
        // As the reader held it before: W (n, k) and x (1, rows, k).
        let linear = QMatMul::Tensor(Tensor::from_vec(w, (n, k), &Device::Cpu)?);
        let x_tensor = Tensor::from_vec(x.clone(), (1, ROWS, k), &Device::Cpu)?;
        let (mut with_candle, mut with_panels) = (Vec::new(), Vec::new());
        for _ in 0..REPEATS {
            let start = Instant::now();
            let y_candle = linear.forward(&x_tensor)?.flatten_all()?.to_vec1::<f32>()?;
            with_candle.push(start.elapsed().as_secs_f64() * 1e6);
            let start = Instant::now();
            let y_panels = panels::multiply(&x, ROWS, &packed);
            with_panels.push(start.elapsed().as_secs_f64() * 1e6);
            let worst = y_candle
                .iter()
                .zip(&y_panels)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-3, "the products differ by {worst}");
        }
        let (c, p) = (median(&mut with_candle), median(&mut with_panels));
        println!(
            "{k:>5} -> {n:<5} x{count}  candle {c:7.0} us   panels {p:7.0} us   {:.2}x",
            c / p
        );
        layer_candle += c * count as f64;
        layer_panels += p * count as f64;
    }
    println!(
        "one layer's products: candle {layer_candle:.0} us, panels {layer_panels:.0} us, {:.2}x",
        layer_candle / layer_panels
    );
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
