//! The bf16 products of `amx` on CPUs with AVX-512 BF16 but no AMX (AMD Zen 4 and
//! Zen 5, Intel Cooper Lake). One `vdpbf16ps` adds 16 sums of two bf16 products each
//! to f32 accumulators, twice the multiplies of an f32 FMA of the same width, and the
//! weights are half the bytes to stream. It reads `tiles::Packed` as the tiles do: an
//! AMX B tile's row (an input pair x 16 columns) is exactly one register's operand.
//! The inputs are rounded to bf16 and the sums stay f32, as on the tiles.

use crate::tiles::{COLS, DEPTH, Packed};

/// Whether this CPU has AVX-512 with the BF16 dot product.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Rows of x one pass multiplies: 6 rows x 32 columns of sums in 12 registers, enough
/// independent sums to keep both dot-product units busy.
const ROWS: usize = 6;
/// Input blocks (of DEPTH) one pass covers: 256 inputs x 32 columns of bf16, 16 KiB,
/// which stays in L1 while the rows pass.
const BLOCKS: usize = 8;

/// y[0..rows, columns of `pairs`] += a w, as `amx`'s block product: `y` at the
/// block's first row (row step `n` floats), `a` the block's rows of x in bf16 (row
/// step `k`), `pairs` ranges over pairs of 16-column blocks.
///
/// # Safety
///
/// The CPU has AVX-512F and AVX-512 BF16 ([`available`]); `y` reaches `rows` rows of
/// `n` floats, and no other thread writes the columns of `pairs` in them.
#[cfg(target_arch = "x86_64")]
pub unsafe fn block_product(
    y: *mut f32,
    n: usize,
    (a, rows): (&[u16], usize),
    k: usize,
    w: &Packed,
    pairs: std::ops::Range<usize>,
) {
    assert!(a.len() >= rows * k && w.shape().0 == k && k.is_multiple_of(DEPTH));
    assert!(
        pairs.end <= w.shape().1 / (2 * COLS),
        "column pairs past the weight"
    );
    let blocks = k / DEPTH;
    for pair in pairs {
        let tiles = [w.tile(2 * pair, 0), w.tile(2 * pair + 1, 0)];
        for first_block in (0..blocks).step_by(BLOCKS) {
            let depth = BLOCKS.min(blocks - first_block) * DEPTH;
            let mut first = 0;
            while first < rows {
                // Within y's rows, a's rows and each column block's tiles (which run on
                // for the input blocks that follow).
                let at = Pass {
                    y: y.wrapping_add(first * n + 2 * pair * COLS),
                    n,
                    a: &a[first * k + first_block * DEPTH..],
                    k,
                    w: tiles.map(|t| t.wrapping_add(first_block * DEPTH * COLS)),
                    depth,
                };
                // SAFETY: the caller promised the CPU and y; `Pass` is within bounds.
                first += unsafe {
                    match rows - first {
                        1 => add_rows::<1>(at),
                        2 => add_rows::<2>(at),
                        3 => add_rows::<3>(at),
                        4 => add_rows::<4>(at),
                        5 => add_rows::<5>(at),
                        _ => add_rows::<ROWS>(at),
                    }
                };
            }
        }
    }
}

/// One pass: R rows of sums at `y` (32 columns, row step `n`), R rows of bf16 inputs
/// at `a` (row step `k`, `depth` of them from here), the two column blocks' packed
/// rows for those inputs at `w`.
#[cfg(target_arch = "x86_64")]
struct Pass<'a> {
    y: *mut f32,
    n: usize,
    a: &'a [u16],
    k: usize,
    w: [*const u16; 2],
    depth: usize,
}

/// Adds one pass's products to its sums; returns R.
///
/// # Safety
///
/// AVX-512F and BF16; `at.y` reaches R rows of 32 floats (row step `at.n`), `at.w`
/// `at.depth` inputs of each column block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn add_rows<const R: usize>(at: Pass) -> usize {
    use std::arch::x86_64::*;
    let Pass {
        y,
        n,
        a,
        k,
        w,
        depth,
    } = at;
    assert!(a.len() >= (R - 1) * k + depth);
    let a = a.as_ptr();
    // SAFETY: every offset stays within the rows and inputs the caller promised.
    unsafe {
        let mut acc: [[__m512; 2]; R] = std::array::from_fn(|r| {
            [
                _mm512_loadu_ps(y.add(r * n)),
                _mm512_loadu_ps(y.add(r * n + COLS)),
            ]
        });
        // Each step covers an input pair: one register of packed weights per column
        // block (16 columns x 2 inputs), one broadcast pair of inputs per row.
        for pair in 0..depth / 2 {
            let b: [__m512bh; 2] =
                w.map(|w| std::mem::transmute(_mm512_loadu_si512(w.add(pair * 2 * COLS).cast())));
            for (r, acc) in acc.iter_mut().enumerate() {
                let inputs = a.add(r * k + 2 * pair).cast::<i32>().read_unaligned();
                let inputs: __m512bh = std::mem::transmute(_mm512_set1_epi32(inputs));
                acc[0] = _mm512_dpbf16_ps(acc[0], inputs, b[0]);
                acc[1] = _mm512_dpbf16_ps(acc[1], inputs, b[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(y.add(r * n), acc[0]);
            _mm512_storeu_ps(y.add(r * n + COLS), acc[1]);
        }
    }
    R
}
