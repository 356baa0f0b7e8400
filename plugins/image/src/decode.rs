//! Image bytes to RGB pixels: PNG, JPEG (EXIF orientation applied), WebP and BMP. The
//! size is read from the header and checked against the pixel limit before any pixel
//! is decoded, so a small file that claims to be huge (a decompression bomb) costs
//! nothing. The decoders also get an explicit allocation limit, sized by the pixel
//! limit, for what the header does not tell: compressed metadata (a PNG's ICC profile
//! or text) and the pixel buffer itself.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};

/// No image is decoded above this many pixels, whatever the settings say: 16 MP is
/// more than any phone camera's photo a face needs, and bounds what one decode takes.
pub const MAX_PIXELS: u64 = 16_000_000;
/// Bytes per pixel of the widest buffer these formats decode to (16-bit RGBA).
const MAX_BYTES_PER_PIXEL: u64 = 8;

const FORMATS: [ImageFormat; 4] = [
    ImageFormat::Png,
    ImageFormat::Jpeg,
    ImageFormat::WebP,
    ImageFormat::Bmp,
];

/// Why an image was refused, in words for the person who sent it.
#[derive(Debug, PartialEq)]
pub struct Refused(pub String);

/// Decodes `bytes` into upright RGB pixels, refusing images over `max_pixels`.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, Refused> {
    if bytes.is_empty() {
        return Err(Refused("the image is empty (0 bytes)".into()));
    }
    let max_pixels = max_pixels.min(MAX_PIXELS);
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Refused(format!("cannot read the image: {e}")))?;
    let mut limits = decoder_limits(max_pixels);
    reader.limits(limits.clone());
    let format = match reader.format() {
        Some(f) if FORMATS.contains(&f) => f,
        Some(f) => {
            return Err(Refused(format!(
                "{} images are not supported (send PNG, JPEG, WebP or BMP)",
                f.extensions_str().first().unwrap_or(&"this kind of")
            )));
        }
        None => {
            return Err(Refused(
                "the bytes are not an image in a known format (send PNG, JPEG, WebP or BMP)".into(),
            ));
        }
    };
    // JPEG decoders fill a cut-off file with grey rather than fail: check the end.
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(Refused(
            "the jpg image is damaged or truncated: it ends before its end-of-image marker".into(),
        ));
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| explain(format, max_pixels, e))?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(Refused(format!(
            "the image is {w}x{h} = {pixels} pixels, over the limit of {max_pixels} pixels"
        )));
    }
    // The pixel buffer comes out of the same allowance, as `ImageReader::decode` does.
    limits
        .reserve(decoder.total_bytes())
        .and_then(|()| decoder.set_limits(limits))
        .map_err(|e| explain(format, max_pixels, e))?;
    if w < 2 || h < 2 {
        return Err(Refused(format!(
            "the image is {w}x{h} pixels: too small to hold a face"
        )));
    }
    let orientation = decoder
        .orientation()
        .map_err(|e| explain(format, max_pixels, e))?;
    let mut image =
        DynamicImage::from_decoder(decoder).map_err(|e| explain(format, max_pixels, e))?;
    image.apply_orientation(orientation);
    Ok(image.to_rgb8())
}

/// Walks the JPEG's marker segments (skipping each by its length, and each scan's
/// entropy-coded data up to the next marker) and says whether it reaches EOI.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    const EOI: u8 = 0xd9;
    const SOS: u8 = 0xda;
    let mut i = 2; // after SOI
    loop {
        // Markers may be preceded by any number of 0xff fill bytes.
        while bytes.get(i) == Some(&0xff) && bytes.get(i + 1) == Some(&0xff) {
            i += 1;
        }
        let (Some(&0xff), Some(&marker)) = (bytes.get(i), bytes.get(i + 1)) else {
            return false;
        };
        if marker == EOI {
            return true;
        }
        i += 2;
        // Markers without a length: TEM and RSTn.
        if marker == 0x01 || (0xd0..=0xd7).contains(&marker) {
            continue;
        }
        let Some(len) = bytes
            .get(i..i + 2)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
        else {
            return false;
        };
        i += len;
        if marker == SOS {
            // Entropy-coded data: 0xff is followed by 0x00 (stuffing) or RSTn inside it.
            while let Some(at) = bytes
                .get(i..)
                .and_then(|rest| rest.iter().position(|&b| b == 0xff))
            {
                i += at;
                match bytes.get(i + 1) {
                    Some(0x00) | Some(0xd0..=0xd7) => i += 2,
                    Some(_) => break,
                    None => return false,
                }
            }
            if i >= bytes.len() {
                return false;
            }
        }
    }
}

/// What a decoder may allocate for an image of up to `max_pixels`: its widest pixel
/// buffer, and no side longer than the pixel limit allows (the other side is at least 2).
pub fn decoder_limits(max_pixels: u64) -> Limits {
    let side = u32::try_from(max_pixels / 2).unwrap_or(u32::MAX);
    let mut limits = Limits::default();
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    limits.max_alloc = Some(max_pixels.saturating_mul(MAX_BYTES_PER_PIXEL));
    limits
}

fn explain(format: ImageFormat, max_pixels: u64, e: ImageError) -> Refused {
    let name = format.extensions_str().first().copied().unwrap_or("image");
    Refused(match e {
        ImageError::Unsupported(u) => {
            format!("this {name} image uses a feature that is not supported: {u}")
        }
        ImageError::Limits(l) => format!(
            "the {name} image is too large to decode within the limit for {max_pixels} pixels \
             ({} bytes of memory): {l}",
            max_pixels.saturating_mul(MAX_BYTES_PER_PIXEL)
        ),
        e => format!("the {name} image is damaged or truncated: {e}"),
    })
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};

    use super::*;

    const LIMIT: u64 = 40_000_000;

    fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).expect("encode");
        out.into_inner()
    }

    fn refusal(bytes: &[u8]) -> String {
        match decode(bytes, LIMIT) {
            Err(Refused(message)) => message,
            Ok(img) => panic!("decoded a {}x{} image", img.width(), img.height()),
        }
    }

    #[test]
    fn decodes_each_format_and_colour_type() {
        let rgb = DynamicImage::ImageRgb8(ImageBuffer::from_pixel(8, 6, Rgb([200, 10, 10])));
        for format in [
            ImageFormat::Png,
            ImageFormat::Jpeg,
            ImageFormat::Bmp,
            ImageFormat::WebP,
        ] {
            let img = decode(&encode(rgb.clone(), format), LIMIT).expect("decodes");
            assert_eq!(img.dimensions(), (8, 6), "{format:?}");
            assert!(img.get_pixel(3, 3)[0] > 150, "{format:?}");
        }
        let grey = DynamicImage::ImageLuma8(ImageBuffer::from_pixel(4, 4, Luma([90])));
        let alpha = DynamicImage::ImageRgba8(ImageBuffer::from_pixel(4, 4, Rgba([1, 2, 3, 0])));
        let grey_alpha = DynamicImage::ImageLumaA8(ImageBuffer::from_pixel(4, 4, LumaA([7, 9])));
        let deep = DynamicImage::ImageRgb16(ImageBuffer::from_pixel(4, 4, Rgb([65535, 0, 32768])));
        assert_eq!(
            decode(&encode(grey, ImageFormat::Png), LIMIT)
                .expect("grey")
                .get_pixel(0, 0)
                .0,
            [90, 90, 90]
        );
        assert_eq!(
            decode(&encode(alpha, ImageFormat::Png), LIMIT)
                .expect("alpha")
                .get_pixel(0, 0)
                .0,
            [1, 2, 3]
        );
        assert_eq!(
            decode(&encode(grey_alpha, ImageFormat::Png), LIMIT)
                .expect("grey+alpha")
                .get_pixel(0, 0)
                .0,
            [7, 7, 7]
        );
        assert_eq!(
            decode(&encode(deep, ImageFormat::Png), LIMIT)
                .expect("16-bit")
                .get_pixel(0, 0)
                .0,
            [255, 0, 128]
        );
    }

    #[test]
    fn refuses_what_is_not_a_usable_image() {
        assert!(refusal(b"").contains("empty"));
        assert!(refusal(b"hello, I am not a picture").contains("not an image"));
        let tiny = DynamicImage::ImageRgb8(ImageBuffer::from_pixel(1, 1, Rgb([0, 0, 0])));
        assert!(refusal(&encode(tiny, ImageFormat::Png)).contains("1x1"));
        let gif = DynamicImage::ImageRgb8(ImageBuffer::from_pixel(4, 4, Rgb([0, 0, 0])));
        assert!(refusal(&encode(gif, ImageFormat::Gif)).contains("not supported"));
        let png = encode(
            DynamicImage::ImageRgb8(ImageBuffer::from_pixel(64, 64, Rgb([9, 9, 9]))),
            ImageFormat::Png,
        );
        assert!(refusal(&png[..png.len() / 2]).contains("damaged or truncated"));
    }

    #[test]
    fn applies_the_exif_orientation_of_a_jpeg() {
        // 8 wide, 4 high, the left column white; EXIF 6 says "rotate 90° clockwise".
        let mut img = RgbImage::new(8, 4);
        for y in 0..4 {
            img.put_pixel(0, y, Rgb([255, 255, 255]));
        }
        let jpeg = encode(DynamicImage::ImageRgb8(img), ImageFormat::Jpeg);
        // APP1 "Exif": a big-endian TIFF header and one IFD entry, Orientation = 6.
        let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01".to_vec();
        exif.extend([0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0]);
        let mut tagged = jpeg[..2].to_vec();
        tagged.extend([0xff, 0xe1]);
        tagged.extend(((exif.len() + 2) as u16).to_be_bytes());
        tagged.extend(exif);
        tagged.extend(&jpeg[2..]);
        let upright = decode(&tagged, LIMIT).expect("decodes");
        assert_eq!(upright.dimensions(), (4, 8));
        // The white column is now the top row.
        assert!(upright.get_pixel(2, 0)[0] > 200 && upright.get_pixel(2, 7)[0] < 60);
    }

    #[test]
    fn refuses_a_truncated_jpeg() {
        let mut img = RgbImage::new(64, 64);
        for (x, y, p) in img.enumerate_pixels_mut() {
            *p = Rgb([(x * 4) as u8, (y * 4) as u8, 128]);
        }
        let jpeg = encode(DynamicImage::ImageRgb8(img), ImageFormat::Jpeg);
        assert!(jpeg_is_complete(&jpeg));
        for cut in [jpeg.len() / 2, jpeg.len() - 2, 100] {
            let message = refusal(&jpeg[..cut]);
            assert!(message.contains("truncated"), "{message}");
        }
        // Bytes after the end-of-image marker (camera trailers) are fine.
        let mut trailer = jpeg.clone();
        trailer.extend(b"trailing data");
        assert!(decode(&trailer, LIMIT).is_ok());
    }

    #[test]
    fn reads_the_first_frame_of_an_animation() {
        let mut apng = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut apng, 4, 4);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_animated(2, 0).expect("animated");
            let mut writer = encoder.write_header().expect("header");
            writer
                .write_image_data(&[255, 0, 0].repeat(16))
                .expect("frame 1");
            writer
                .write_image_data(&[0, 0, 255].repeat(16))
                .expect("frame 2");
            writer.finish().expect("finish");
        }
        let first = decode(&apng, LIMIT).expect("decodes");
        assert_eq!(first.get_pixel(1, 1).0, [255, 0, 0]);
    }

    #[test]
    fn refuses_a_huge_image_from_its_header() {
        // A valid PNG header claiming 20000x20000, then an empty data chunk: decoding
        // it would mean allocating 1.2 GB.
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut header = 20000u32.to_be_bytes().to_vec();
        header.extend(20000u32.to_be_bytes());
        header.extend([8, 2, 0, 0, 0]);
        chunk(&mut png, b"IHDR", &header);
        chunk(&mut png, b"IDAT", &[]);
        chunk(&mut png, b"IEND", &[]);
        let message = refusal(&png);
        assert!(
            message.contains("20000x20000") && message.contains("limit"),
            "{message}"
        );
    }

    fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        png.extend((data.len() as u32).to_be_bytes());
        let start = png.len();
        png.extend(kind);
        png.extend(data);
        let crc = crc32fast::hash(&png[start..]);
        png.extend(crc.to_be_bytes());
    }
}
