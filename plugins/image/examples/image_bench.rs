//! Image path throughput: a 640x480 JPEG with one face (the astronaut, scaled onto a
//! grey canvas) through the plugin's `encode` (decode, detect, expression), one image
//! per call. Writes the JPEG's pixels for reference/bench.cjs, which times face-api on
//! TF.js with the same pixels, and prints one JSON line.
//!
//!     cargo run --release -p empathy-plugin-image --example image_bench -- OUT_DIR [REPS]

use std::{io::Cursor, path::PathBuf, time::Instant};

use anyhow::{Context, Result};
use empathy_plugin_api::Plugin;
use empathy_plugin_image::ImagePlugin;
use empathy_proto::v1::{EncodeInput, EncodeRequest, PluginConfig, encode_input::Payload};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage, imageops};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().context("usage: bench OUT_DIR [REPS]")?);
    let reps: usize = args.next().map_or(Ok(30), |r| r.parse())?;
    let assets = std::env::var_os("EMPATHY_ASSETS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets"),
        PathBuf::from,
    );

    let astronaut = image::open(assets.join("photos/astronaut.png"))?.to_rgb8();
    let face = imageops::resize(&astronaut, 480, 480, imageops::FilterType::Triangle);
    let mut canvas = RgbImage::from_pixel(640, 480, Rgb([128, 128, 128]));
    imageops::overlay(&mut canvas, &face, 80, 0);
    let mut jpeg = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(canvas).write_to(&mut jpeg, ImageFormat::Jpeg)?;
    let jpeg = jpeg.into_inner();
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("bench.jpg"), &jpeg)?;
    let decoded = image::load_from_memory(&jpeg)?.to_rgb8();
    std::fs::write(out.join("bench.rgb"), decoded.as_raw())?;

    let plugin = ImagePlugin::create(&PluginConfig {
        assets_dir: assets.display().to_string(),
        ..Default::default()
    })
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let request = EncodeRequest {
        modality: "image".into(),
        inputs: vec![EncodeInput {
            payload: Some(Payload::Data(jpeg.into())),
            mime_type: "image/jpeg".into(),
        }],
        language: String::new(),
    };
    let run = || {
        plugin
            .encode(request.clone())
            .map_err(|e| anyhow::anyhow!("{}", e.message))
    };
    let faces = run()?.outputs[0].faces.len();
    let mut secs = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        run()?;
        secs.push(start.elapsed().as_secs_f64());
    }
    secs.sort_by(f64::total_cmp);
    let median = secs[secs.len() / 2];
    println!(
        "{}",
        serde_json::json!({
            "impl": "empathy image plugin (candle)",
            "threads": candle_core::utils::get_num_threads(),
            "faces": faces,
            "median_ms": median * 1000.0,
            "images_per_s": 1.0 / median,
        })
    );
    Ok(())
}
