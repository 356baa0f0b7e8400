//! The image path end to end: the encoder with the text and image plugins, and fusion,
//! as real processes over gRPC, on scikit-image's test photos.

mod support;

use std::io::Cursor;

use empathy_grpc::v1::{
    AnalyzeRequest, AnalyzeResponse, empathy_service_client::EmpathyServiceClient,
};
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, LumaA, RgbImage};
use support::*;
use tonic::{Code, transport::Channel};

fn photo(name: &str) -> Vec<u8> {
    let path = assets().join("photos").join(name);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `empathy assets fetch`)", path.display()))
}

fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

async fn analyze(
    c: &mut EmpathyServiceClient<Channel>,
    text: &str,
    image: Vec<u8>,
) -> Result<AnalyzeResponse, tonic::Status> {
    c.analyze(AnalyzeRequest {
        text: text.into(),
        image: image.into(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

fn attribution(r: &AnalyzeResponse, modality: &str) -> f32 {
    r.attributions
        .iter()
        .find(|a| a.kind == "modality" && a.name == modality)
        .map_or(0.0, |a| a.weight)
}

#[tokio::test]
async fn faces_and_expressions_end_to_end() -> anyhow::Result<()> {
    let encoder = start_encoder(&["--plugin", "image"]).await?;
    let fusion = start_fusion(&[encoder.url()], &[]).await?;
    let mut c = client(&fusion).await?;

    // The smiling astronaut: one face, where she is, and joy.
    let r = analyze(&mut c, "", photo("astronaut.png")).await?;
    assert_eq!(r.faces.len(), 1, "{:?}", r.faces);
    let face = &r.faces[0];
    let (cx, cy) = (face.x + face.width / 2.0, face.y + face.height / 2.0);
    assert!(
        (160.0..=290.0).contains(&face.x) && (50.0..=180.0).contains(&face.y),
        "{face:?}"
    );
    assert!(
        (160.0..=290.0).contains(&cx) && (50.0..=180.0).contains(&cy),
        "{face:?}"
    );
    assert!(
        face.x + face.width <= 300.0 && face.y + face.height <= 190.0,
        "{face:?}"
    );
    assert!(face.score > 0.5);
    let face_top = face
        .emotions
        .iter()
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .map(|s| s.label.as_str());
    assert_eq!(face_top, Some("joy"));
    let emotions = r.emotions.as_ref().expect("emotions");
    assert_eq!(emotions.top, "joy", "{emotions:?}");
    assert_eq!(emotions.source, "lexicon+image");
    assert_eq!(
        r.sentiment.as_ref().map(|s| s.label.as_str()),
        Some("positive")
    );
    assert_eq!(r.modalities_used, ["image"]);
    assert!(attribution(&r, "image") > 0.99);

    // No face is an answer, not an error.
    let r = analyze(&mut c, "", photo("coffee.png")).await?;
    assert!(r.faces.is_empty());
    assert!(
        r.notes.iter().any(|n| n.contains("no face found")),
        "{:?}",
        r.notes
    );
    assert_eq!(r.modalities_used, ["image"]);

    // Words and a face together: both used, both explained.
    let r = analyze(
        &mut c,
        "We finally made it to orbit!",
        photo("astronaut.png"),
    )
    .await?;
    let mut used = r.modalities_used.clone();
    used.sort();
    assert_eq!(used, ["image", "text"]);
    assert!(attribution(&r, "text") > 0.0, "{:?}", r.attributions);
    assert!(attribution(&r, "image") > 0.0, "{:?}", r.attributions);
    assert_eq!(r.faces.len(), 1);
    Ok(())
}

#[tokio::test]
async fn bad_images_get_clear_answers_and_the_service_keeps_serving() -> anyhow::Result<()> {
    let encoder = start_encoder(&["--plugin", "image"]).await?;
    let fusion = start_fusion(&[encoder.url()], &[]).await?;
    let mut c = client(&fusion).await?;

    let astronaut = image::load_from_memory(&photo("astronaut.png"))?;
    let jpeg = encode(astronaut.clone(), ImageFormat::Jpeg);
    let one_pixel = encode(
        DynamicImage::ImageRgb8(RgbImage::new(1, 1)),
        ImageFormat::Png,
    );
    let refused = [
        (b"this is not a picture".to_vec(), "not an image"),
        (jpeg[..jpeg.len() / 2].to_vec(), "truncated"),
        (one_pixel, "1x1"),
        (huge_png_header(), "over the limit"),
    ];
    for (bytes, why) in refused {
        let status = analyze(&mut c, "", bytes).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(why), "{}", status.message());
        assert!(
            status.message().starts_with("image:"),
            "{}",
            status.message()
        );
    }

    // Unusual but valid images are read: grey, grey + alpha, 16-bit, animated.
    let (w, h) = (astronaut.width(), astronaut.height());
    let grey = DynamicImage::ImageLuma8(astronaut.to_luma8());
    let grey_alpha: ImageBuffer<LumaA<u8>, _> = ImageBuffer::from_fn(w, h, |x, y| {
        let Luma([v]) = *grey.as_luma8().expect("grey").get_pixel(x, y);
        LumaA([v, 255])
    });
    let deep = DynamicImage::ImageRgb16(astronaut.to_rgb16());
    let valid = [
        encode(grey.clone(), ImageFormat::Png),
        encode(DynamicImage::ImageLumaA8(grey_alpha), ImageFormat::Png),
        encode(deep, ImageFormat::Png),
        animated_png(&astronaut.to_rgb8()),
    ];
    for bytes in valid {
        let r = analyze(&mut c, "", bytes).await?;
        assert_eq!(r.faces.len(), 1, "the astronaut is still found");
    }

    // Still serving after all of that.
    let r = analyze(&mut c, "", photo("astronaut.png")).await?;
    assert_eq!(r.faces.len(), 1);
    Ok(())
}

/// A PNG whose header claims 20000x20000 pixels (1.2 GB to decode), with an empty
/// data chunk behind it.
fn huge_png_header() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, 20_000, 20_000);
        encoder.set_color(png::ColorType::Rgb);
        let mut writer = encoder.write_header().expect("header");
        writer.write_chunk(png::chunk::IDAT, &[]).expect("IDAT");
        std::mem::forget(writer); // dropping would try to finish the image
    }
    out
}

/// Two frames: the photo, then a black frame.
fn animated_png(first: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, first.width(), first.height());
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_animated(2, 0).expect("animated");
        let mut writer = encoder.write_header().expect("header");
        writer.write_image_data(first.as_raw()).expect("frame 1");
        writer
            .write_image_data(&vec![0; first.as_raw().len()])
            .expect("frame 2");
        writer.finish().expect("finish");
    }
    out
}
