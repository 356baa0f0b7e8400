//! f32 matrix products against a weight packed once at load, for the few rows of one
//! text (tens of tokens) on CPUs without AMX. gemm packs its right-hand side again on
//! every call; at so few rows that costs about as much as the products (on an AMD EPYC
//! with AVX2, gemm outside its multiply kernel was a quarter of the meaning reader's
//! samples, the kernel a third). Here W^T is laid out at
//! load as the kernel reads it: panels of 16 output columns, the inputs in order, so a
//! product only streams it. The sums are f32, in input order, as a plain dot product's.

use rayon::prelude::*;

/// Output columns one panel holds: two AVX2 registers.
const WIDTH: usize = 16;
/// Rows of x one pass over a panel multiplies: 6 x 16 sums stay in 12 AVX2 registers.
const ROWS: usize = 6;
/// Inputs one pass covers: 16 KiB of a panel, which stays in L1 while the rows pass.
const DEPTH: usize = 256;

/// Whether this CPU has AVX2 and FMA, which the kernel is written in (every AVX-512 CPU
/// has them too).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// W^T (k, n) in f32, as panels of WIDTH columns (the last padded with zeros), each
/// k rows of WIDTH.
pub struct Panels {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl Panels {
    /// Packs `weight_t`, (k, n) row-major.
    pub fn new(weight_t: &[f32], k: usize, n: usize) -> Self {
        assert!(k > 0 && weight_t.len() == k * n, "a ({k}, {n}) weight");
        let panels = n.div_ceil(WIDTH);
        let mut data = vec![0f32; panels * k * WIDTH];
        for (p, panel) in data.chunks_exact_mut(k * WIDTH).enumerate() {
            let cols = p * WIDTH..((p + 1) * WIDTH).min(n);
            for (row, out) in panel.chunks_exact_mut(WIDTH).enumerate() {
                out[..cols.len()].copy_from_slice(&weight_t[row * n..][cols.clone()]);
            }
        }
        Self { k, n, data }
    }

    /// (k, n): inputs, outputs.
    pub fn shape(&self) -> (usize, usize) {
        (self.k, self.n)
    }
}

/// `x W` for `x` of (rows, k), row-major: (rows, n), the panels shared out among the
/// compute threads. Only call where [`available`] holds (it panics elsewhere).
pub fn multiply(x: &[f32], rows: usize, w: &Panels) -> Vec<f32> {
    assert!(available(), "the panels' kernel needs AVX2 and FMA");
    let (k, n) = w.shape();
    assert_eq!(x.len(), rows * k, "{rows} rows of {k}");
    let panels = n.div_ceil(WIDTH);
    if rows == 0 || panels == 0 {
        return vec![0f32; rows * n];
    }
    // A few panels a task: enough tasks for every thread, each long enough to pay for
    // its own scheduling.
    let per_task = panels.div_ceil(4 * rayon::current_num_threads());
    let blocks: Vec<Vec<f32>> = w
        .data
        .par_chunks(per_task * k * WIDTH)
        .map(|group| {
            let mut out = vec![0f32; rows * group.len() / k];
            panel_products(x, rows, k, group, &mut out);
            out
        })
        .collect();
    // Each block is (panels in it) x rows x WIDTH; y is rows x n.
    let mut y = vec![0f32; rows * n];
    for (t, block) in blocks.iter().enumerate() {
        for (i, panel) in block.chunks_exact(rows * WIDTH).enumerate() {
            let first = (t * per_task + i) * WIDTH;
            let cols = WIDTH.min(n - first);
            for (r, sums) in panel.chunks_exact(WIDTH).enumerate() {
                y[r * n + first..][..cols].copy_from_slice(&sums[..cols]);
            }
        }
    }
    y
}

/// For each panel of `panels`, x's rows times it into `out` (panel by panel, rows x
/// WIDTH each). `multiply` checked [`available`].
fn panel_products(x: &[f32], rows: usize, k: usize, panels: &[f32], out: &mut [f32]) {
    assert!(x.len() == rows * k && panels.len() / (k * WIDTH) * rows * WIDTH == out.len());
    for (panel, sums) in panels
        .chunks_exact(k * WIDTH)
        .zip(out.chunks_exact_mut(rows * WIDTH))
    {
        // A DEPTH-long piece of the panel stays in L1 while every row passes over it.
        for (piece, part) in panel.chunks(DEPTH * WIDTH).enumerate() {
            let mut first = 0;
            while first < rows {
                let x = &x[first * k + piece * DEPTH..];
                let sums = &mut sums[first * WIDTH..];
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the caller checked `available()` (AVX2 and FMA); `x` holds
                // R rows of k from here (x is rows x k and first + R <= rows), `part` its
                // inputs' rows of the panel, `sums` R x WIDTH.
                unsafe {
                    first += match rows - first {
                        1 => add_rows_times::<1>(x, k, part, sums),
                        2 => add_rows_times::<2>(x, k, part, sums),
                        3 => add_rows_times::<3>(x, k, part, sums),
                        4 => add_rows_times::<4>(x, k, part, sums),
                        5 => add_rows_times::<5>(x, k, part, sums),
                        _ => add_rows_times::<ROWS>(x, k, part, sums),
                    };
                }
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!("the kernel is x86-64 only, so available() is false here");
            }
        }
    }
}

/// Adds R rows of `x` (row i at i * k) times `part` (rows of a panel, one per input)
/// to `sums` (R x WIDTH), two registers of sums a row; returns R.
///
/// # Safety
/// The CPU has AVX2 and FMA; `x` holds R - 1 rows of k and then `part.len() / WIDTH`
/// inputs; `sums` holds R x WIDTH.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn add_rows_times<const R: usize>(
    x: &[f32],
    k: usize,
    part: &[f32],
    sums: &mut [f32],
) -> usize {
    use std::arch::x86_64::*;
    let depth = part.len() / WIDTH;
    assert!(x.len() >= (R - 1) * k + depth && sums.len() >= R * WIDTH);
    let (x, w, s) = (x.as_ptr(), part.as_ptr(), sums.as_mut_ptr());
    // SAFETY: every pointer stays within the slices, as the caller promised.
    unsafe {
        let mut acc: [[__m256; 2]; R] = std::array::from_fn(|r| {
            [
                _mm256_loadu_ps(s.add(r * WIDTH)),
                _mm256_loadu_ps(s.add(r * WIDTH + 8)),
            ]
        });
        for i in 0..depth {
            let b = [
                _mm256_loadu_ps(w.add(i * WIDTH)),
                _mm256_loadu_ps(w.add(i * WIDTH + 8)),
            ];
            for (r, acc) in acc.iter_mut().enumerate() {
                let a = _mm256_broadcast_ss(&*x.add(r * k + i));
                acc[0] = _mm256_fmadd_ps(a, b[0], acc[0]);
                acc[1] = _mm256_fmadd_ps(a, b[1], acc[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            _mm256_storeu_ps(s.add(r * WIDTH), acc[0]);
            _mm256_storeu_ps(s.add(r * WIDTH + 8), acc[1]);
        }
    }
    R
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quarters from -1.5 to 1.5 in no simple order, so a wrong index shows and every
    /// sum below is exact in f32 (sixteenths, far below 2^24 of them).
    fn matrix(rows: usize, cols: usize, seed: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| ((i * 7919 + seed) % 13) as f32 / 4.0 - 1.5)
            .collect()
    }

    #[test]
    fn matches_the_plain_product() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX2 and FMA");
            return;
        }
        // Row counts below, at and past one pass (6); widths that leave a part panel;
        // inputs past one piece (256).
        for (rows, k, n) in [
            (1, 5, 3),
            (7, 64, 40),
            (13, 33, 48),
            (6, 16, 16),
            (8, 600, 20),
        ] {
            let x = matrix(rows, k, 1);
            let w_t = matrix(k, n, 5);
            let y = multiply(&x, rows, &Panels::new(&w_t, k, n));
            for r in 0..rows {
                for c in 0..n {
                    let expected: f32 = (0..k).map(|i| x[r * k + i] * w_t[i * n + c]).sum();
                    assert_eq!(
                        y[r * n + c],
                        expected,
                        "row {r}, column {c} of {rows}x{k}x{n}"
                    );
                }
            }
        }
    }
}
