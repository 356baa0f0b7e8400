//! Arbitrary and damaged images never panic the decoder: each is decoded within the
//! pixel limit or refused with a reason.

use image::{ImageBuffer, Rgb};
use proptest::prelude::*;

use super::*;

const LIMIT: u64 = 1_000_000;

/// How each format starts, so that arbitrary bytes reach its decoder.
const MAGIC: [&[u8]; 5] = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"RIFF\0\0\0\0WEBPVP8 ",
    b"BM",
];

fn encoded(format: ImageFormat, width: u32, height: u32) -> Vec<u8> {
    let img = ImageBuffer::from_fn(width, height, |x, y| {
        Rgb([(x * 7) as u8, (y * 5) as u8, 99])
    });
    let mut out = Cursor::new(Vec::new());
    match DynamicImage::ImageRgb8(img).write_to(&mut out, format) {
        Ok(()) => out.into_inner(),
        Err(e) => panic!("cannot encode a {format:?} test image: {e}"),
    }
}

/// A valid PNG, JPEG, WebP or BMP with some bytes overwritten and maybe cut short.
fn damaged_image() -> impl Strategy<Value = Vec<u8>> {
    let formats = prop::sample::select(vec![
        ImageFormat::Png,
        ImageFormat::Jpeg,
        ImageFormat::WebP,
        ImageFormat::Bmp,
    ]);
    (
        formats,
        2u32..24,
        2u32..24,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(format, w, h, edits, cut)| {
            let mut bytes = encoded(format, w, h);
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            bytes.truncate(cut.index(bytes.len()) + 1);
            bytes
        })
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode(bytes, LIMIT) {
        Ok(img) => prop_assert!(u64::from(img.width()) * u64::from(img.height()) <= LIMIT),
        Err(Refused(message)) => prop_assert!(!message.is_empty()),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_refused_not_panicked_on(
        magic in prop::sample::select(MAGIC.to_vec()),
        rest in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = magic.to_vec();
        bytes.extend(rest);
        check(&bytes)?;
    }

    #[test]
    fn damaged_images_are_decoded_or_refused(bytes in damaged_image()) {
        check(&bytes)?;
    }
}
