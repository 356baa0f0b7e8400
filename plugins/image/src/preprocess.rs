//! The networks' input, made exactly as face-api makes it: pad the image to a square
//! with black (at the end, or centred), resize bilinearly as TF's `resizeBilinear`
//! does (no corner alignment, no half-pixel centres), subtract the mean colour, /255.

use candle_core::{Device, Result, Tensor};
use image::RgbImage;

/// A (1, 3, size, size) network input from `image`.
pub fn square_input(
    image: &RgbImage,
    size: usize,
    centre: bool,
    mean_rgb: [f32; 3],
    device: &Device,
) -> Result<Tensor> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let side = w.max(h);
    // face-api appends round(diff / 2) when centring and prepends the rest.
    let before = |len: usize| {
        let diff = side - len;
        if centre {
            diff - (diff as f64 * 0.5).round() as usize
        } else {
            0
        }
    };
    let (left, top) = (before(w), before(h));
    let pixel = |row: usize, col: usize, c: usize| -> f64 {
        match (row.checked_sub(top), col.checked_sub(left)) {
            (Some(y), Some(x)) if y < h && x < w => {
                f64::from(image.get_pixel(x as u32, y as u32)[c])
            }
            _ => 0.0,
        }
    };
    let ratio = side as f64 / size as f64;
    let sample = |out: usize| {
        let src = ratio * out as f64;
        let lo = src.floor() as usize;
        let hi = (src.ceil() as usize).min(side - 1);
        (lo, hi, src - lo as f64)
    };
    let cols: Vec<_> = (0..size).map(sample).collect();
    let mut data = vec![0f32; 3 * size * size];
    for (r, (r0, r1, fr)) in (0..size).map(|r| (r, sample(r))) {
        for (c, &(c0, c1, fc)) in cols.iter().enumerate() {
            for ch in 0..3 {
                let top = pixel(r0, c0, ch) + (pixel(r0, c1, ch) - pixel(r0, c0, ch)) * fc;
                let bottom = pixel(r1, c0, ch) + (pixel(r1, c1, ch) - pixel(r1, c0, ch)) * fc;
                let value = (top + (bottom - top) * fr) as f32;
                data[(ch * size + r) * size + c] = (value - mean_rgb[ch]) / 255.0;
            }
        }
    }
    Tensor::from_vec(data, (1, 3, size, size), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_at_the_end_or_centred() -> Result<()> {
        // A 2x1 white image (two columns, one row) padded to 2x2 and kept at size 2.
        let image = RgbImage::from_pixel(2, 1, image::Rgb([255, 255, 255]));
        let end = square_input(&image, 2, false, [0.0; 3], &Device::Cpu)?;
        let red = end.narrow(1, 0, 1)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(red, [1.0, 1.0, 0.0, 0.0]);
        // One row of padding to share: round(0.5) = 1 goes after, none before.
        let centred = square_input(&image, 2, true, [0.0; 3], &Device::Cpu)?;
        let red = centred.narrow(1, 0, 1)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(red, [1.0, 1.0, 0.0, 0.0]);
        Ok(())
    }

    #[test]
    fn resizes_without_half_pixel_centres() -> Result<()> {
        // Columns 0, 100, 200, 250 shrunk to 2: samples at source 0 and 2.
        let mut image = RgbImage::new(4, 4);
        for (x, _, p) in image.enumerate_pixels_mut() {
            let v = [0u8, 100, 200, 250][x as usize];
            *p = image::Rgb([v, v, v]);
        }
        let t = square_input(&image, 2, false, [0.0; 3], &Device::Cpu)?;
        let red = t.narrow(1, 0, 1)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(red, [0.0, 200.0 / 255.0, 0.0, 200.0 / 255.0]);
        Ok(())
    }
}
