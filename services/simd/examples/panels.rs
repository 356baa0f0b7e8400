//! The panels' product beside candle's f32 matmul (gemm; what the meaning reader ran
//! before the panels, and still runs on CPUs without AVX2), on the meaning reader's
//! layer shapes at 40 rows (a short text and the question), in one process,
//! alternating: median microseconds of each, and of one whole layer, and the ratio.
//! Where the CPU multiplies bf16 (AMX tiles or AVX-512 BF16, what the reader serves
//! there), the bf16 product too, and its ratio to the panels.
//!
//!   cargo run --release -p empathy-simd --example panels

use std::time::Instant;

use candle_core::{Device, Module, Tensor, quantized::QMatMul};
use empathy_simd::{
    amx,
    panels::{self, Panels},
    tiles::Packed,
};

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
    let bf16 = amx::can_multiply();
    let (mut layer_candle, mut layer_panels, mut layer_bf16) = (0.0, 0.0, 0.0);
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
        let tiles = bf16.then(|| Packed::new(&w_t, k, n));
        // As the reader held it before: W (n, k) and x (1, rows, k).
        let linear = QMatMul::Tensor(Tensor::from_vec(w, (n, k), &Device::Cpu)?);
        let x_tensor = Tensor::from_vec(x.clone(), (1, ROWS, k), &Device::Cpu)?;
        let (mut with_candle, mut with_panels, mut with_bf16) =
            (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..REPEATS {
            let start = Instant::now();
            let y_candle = linear.forward(&x_tensor)?.flatten_all()?.to_vec1::<f32>()?;
            with_candle.push(start.elapsed().as_secs_f64() * 1e6);
            let start = Instant::now();
            let y_panels = panels::multiply(&x, ROWS, &packed);
            with_panels.push(start.elapsed().as_secs_f64() * 1e6);
            let worst = largest_gap(&y_candle, &y_panels);
            assert!(worst < 1e-3, "the products differ by {worst}");
            if let Some(tiles) = &tiles {
                let start = Instant::now();
                let y_bf16 = amx::multiply(&x, ROWS, tiles);
                with_bf16.push(start.elapsed().as_secs_f64() * 1e6);
                // Inputs and weights rounded to 8 bits of mantissa: sums of up to
                // 2,048 products of values below 0.5 move by a few hundredths.
                let worst = largest_gap(&y_candle, &y_bf16);
                assert!(worst < 0.1, "bf16 differs from f32 by {worst}");
            }
        }
        let (c, p) = (median(&mut with_candle), median(&mut with_panels));
        print!(
            "{k:>5} -> {n:<5} x{count}  candle {c:7.0} us   panels {p:7.0} us   {:.2}x",
            c / p
        );
        if bf16 {
            let b = median(&mut with_bf16);
            print!("   bf16 {b:7.0} us   panels / bf16 {:.2}x", p / b);
            layer_bf16 += b * count as f64;
        }
        println!();
        layer_candle += c * count as f64;
        layer_panels += p * count as f64;
    }
    println!(
        "one layer's products: candle {layer_candle:.0} us, panels {layer_panels:.0} us, {:.2}x",
        layer_candle / layer_panels
    );
    if bf16 {
        println!(
            "  bf16 ({}) {layer_bf16:.0} us, panels / bf16 {:.2}x",
            empathy_simd::Precision::Auto.bf16_unit().unwrap_or("bf16"),
            layer_panels / layer_bf16
        );
    }
    Ok(())
}

fn largest_gap(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
