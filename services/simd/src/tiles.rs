//! W^T in bf16, packed once at load as the B tiles of AMX's `tdpbf16ps`: the layout
//! `amx` multiplies, on the tiles or (`avx512_bf16`) on the vector units.

use crate::widest;

/// The inner dimension one tile covers (16 pairs of bf16).
pub(crate) const DEPTH: usize = 32;
/// Output columns one tile covers.
pub(crate) const COLS: usize = 16;
/// One B tile: DEPTH x COLS bf16.
const TILE: usize = DEPTH * COLS;

/// W^T (k, n) in bf16, laid out as the B tiles `tdpbf16ps` reads: for each block of 16
/// output columns, for each block of 32 inputs, 16 rows (input pairs) of 16 columns x 2.
pub struct Packed {
    k: usize,
    n: usize,
    tiles: Vec<u16>,
}

impl Packed {
    /// Whether a (k, n) weight fits whole tiles; other shapes stay on the f32 path.
    pub fn fits(k: usize, n: usize) -> bool {
        k > 0 && n > 0 && k.is_multiple_of(DEPTH) && n.is_multiple_of(2 * COLS)
    }

    /// Packs `weight_t`, (k, n) row-major; the shape must [`fit`](Self::fits).
    pub fn new(weight_t: &[f32], k: usize, n: usize) -> Self {
        debug_assert!(Self::fits(k, n) && weight_t.len() == k * n);
        let mut tiles = vec![0u16; k * n];
        for col_block in 0..n / COLS {
            for depth_block in 0..k / DEPTH {
                let tile = &mut tiles[(col_block * (k / DEPTH) + depth_block) * TILE..][..TILE];
                for pair in 0..DEPTH / 2 {
                    for col in 0..COLS {
                        for half in 0..2 {
                            let row = depth_block * DEPTH + 2 * pair + half;
                            tile[pair * 2 * COLS + 2 * col + half] =
                                bf16(weight_t[row * n + col_block * COLS + col]);
                        }
                    }
                }
            }
        }
        Self { k, n, tiles }
    }

    pub fn shape(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    /// The B tile of 16 output columns and 32 inputs; a column block's tiles follow
    /// one another in input order.
    pub(crate) fn tile(&self, col_block: usize, depth_block: usize) -> *const u16 {
        self.tiles[(col_block * (self.k / DEPTH) + depth_block) * TILE..].as_ptr()
    }
}

/// Round to nearest even, as PyTorch and oneDNN convert.
pub(crate) fn bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

widest! {
    pub(crate) fn to_bf16(src: &[f32], dst: &mut [u16]) => convert
}

#[inline(always)]
fn convert(src: &[f32], dst: &mut [u16]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = bf16(*s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_nearest_even() {
        assert_eq!(bf16(1.0), 0x3f80);
        assert_eq!(bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
    }
}
