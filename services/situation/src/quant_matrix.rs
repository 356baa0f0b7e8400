//! `x @ w.T` for a weight matrix kept as the GGUF stores it: blocks of 32 quantized
//! values with an f16 scale (Q4_1: 4 bits and a minimum too; Q8_0: 8 bits).
//!
//! Decoding a token reads every weight once, so its time is memory traffic: 4.5 bits
//! a weight instead of f32's 32 makes a decoding step several times faster. candle
//! 0.11 has SIMD kernels for these blocks only in builds for a `-C target-cpu`, which
//! a binary for every x86 CPU cannot assume; this one picks AVX2+FMA at run time and
//! falls back to a portable loop.

use anyhow::{Result, ensure};
use candle_core::{
    Device, Tensor,
    quantized::{GgmlDType, QTensor},
};
use empathy_simd::{amx, tiles};
use half::f16;

use crate::team::Team;

const BLOCK: usize = 32;
/// Most activation rows that share one pass over a weight row (their sums stay in
/// registers).
const ROW_GROUP: usize = 8;
/// How far ahead of the block in use the kernels ask for quantized bytes.
const PREFETCH: usize = 1024;

/// The two block types SmolLM2's GGUF uses: Q4_1 for the layers, Q8_0 for the
/// embedding table (tied to the output projection).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// d (f16), m (f16), 16 bytes: element i in the low nibble of byte i, i + 16 in
    /// the high; w = d·q + m.
    Q4_1,
    /// d (f16), 32 signed bytes; w = d·q.
    Q8_0,
}

impl Kind {
    fn of(dtype: GgmlDType) -> Option<Self> {
        match dtype {
            GgmlDType::Q4_1 => Some(Self::Q4_1),
            GgmlDType::Q8_0 => Some(Self::Q8_0),
            _ => None,
        }
    }

    /// Bytes of quantized values per block (after the f16 header).
    fn quant_bytes(self) -> usize {
        match self {
            Self::Q4_1 => 16,
            Self::Q8_0 => 32,
        }
    }

    fn header_bytes(self) -> usize {
        match self {
            Self::Q4_1 => 4,
            Self::Q8_0 => 2,
        }
    }

    /// The 32 weights of one block.
    fn dequantize(self, q: &[u8], d: f32, m: f32, w: &mut [f32; BLOCK]) {
        match self {
            Self::Q4_1 => {
                for i in 0..16 {
                    w[i] = d * f32::from(q[i] & 0x0F) + m;
                    w[i + 16] = d * f32::from(q[i] >> 4) + m;
                }
            }
            Self::Q8_0 => {
                for (w, &q) in w.iter_mut().zip(q) {
                    *w = d * f32::from(q as i8);
                }
            }
        }
    }
}

pub struct QuantMatrix {
    kind: Kind,
    /// Output features (weight rows).
    rows: usize,
    /// Input features; a multiple of 32.
    cols: usize,
    /// Per block, row-major: scale and minimum (0 for Q8_0).
    d: Vec<f32>,
    m: Vec<f32>,
    /// Per block, `kind.quant_bytes()` bytes.
    qs: Vec<u8>,
    /// The same weights in bf16 as AMX tiles, for passes over many rows (see
    /// `with_tiles`).
    tiles: Option<tiles::Packed>,
}

impl QuantMatrix {
    /// The matrix of a Q4_1 or Q8_0 tensor of shape (rows, cols); None for other types.
    pub fn from_qtensor(qt: &QTensor) -> Result<Option<Self>> {
        let Some(kind) = Kind::of(qt.dtype()) else {
            return Ok(None);
        };
        let (rows, cols) = qt.shape().dims2()?;
        ensure!(cols % BLOCK == 0, "{kind:?} rows of {cols} values");
        let data = qt.data()?;
        let (head, body) = (kind.header_bytes(), kind.quant_bytes());
        let blocks = rows * cols / BLOCK;
        ensure!(
            data.len() == blocks * (head + body),
            "{kind:?} data of the wrong size"
        );
        let mut matrix = Self {
            kind,
            rows,
            cols,
            d: Vec::with_capacity(blocks),
            m: Vec::with_capacity(blocks),
            qs: Vec::with_capacity(blocks * body),
            tiles: None,
        };
        for block in data.chunks_exact(head + body) {
            let half = |i: usize| f16::from_le_bytes([block[i], block[i + 1]]).to_f32();
            matrix.d.push(half(0));
            matrix
                .m
                .push(if kind == Kind::Q4_1 { half(2) } else { 0.0 });
            matrix.qs.extend_from_slice(&block[head..]);
        }
        Ok(Some(matrix))
    }

    /// Also keeps the weights as bf16 AMX tiles (2 bytes a weight more), where the CPU
    /// multiplies them (AMX, else AVX-512 BF16) and the shape fits, for
    /// [`forward`](Self::forward)'s `many_rows` passes. A pass over a prompt multiplies
    /// each weight by dozens of rows: the tiles do that far faster than this kernel,
    /// which is built for decoding (few rows, every weight read once, so bytes matter
    /// most).
    pub fn with_tiles(mut self) -> Self {
        if !amx::can_multiply() || !tiles::Packed::fits(self.cols, self.rows) {
            return self;
        }
        let blocks = self.cols / BLOCK;
        let body = self.kind.quant_bytes();
        let mut weight_t = vec![0f32; self.cols * self.rows];
        let mut w = [0f32; BLOCK];
        for row in 0..self.rows {
            for b in 0..blocks {
                let block = row * blocks + b;
                let q = &self.qs[block * body..(block + 1) * body];
                self.kind
                    .dequantize(q, self.d[block], self.m[block], &mut w);
                for (i, &v) in w.iter().enumerate() {
                    weight_t[(b * BLOCK + i) * self.rows + row] = v;
                }
            }
        }
        self.tiles = Some(tiles::Packed::new(&weight_t, self.cols, self.rows));
        self
    }

    /// `x @ self.T` for x of shape (n, cols): (n, rows). With `many_rows` (a prompt or a
    /// scored text, never a decoding step, so that a sequence's draws do not depend on
    /// what is decoded beside it) the tiles run it where `with_tiles` made them.
    pub fn forward(&self, x: &Tensor, many_rows: bool) -> Result<Tensor> {
        let (n, cols) = x.dims2()?;
        ensure!(
            cols == self.cols,
            "{cols} inputs for a {} matrix",
            self.cols
        );
        let x: Vec<f32> = x.flatten_all()?.to_vec1()?;
        if let (true, Some(tiles)) = (many_rows, &self.tiles) {
            let out = amx::multiply(&x, n, tiles);
            return Ok(Tensor::from_vec(out, (n, self.rows), &Device::Cpu)?);
        }
        let out = self.dots(&x, n)?;
        Ok(Tensor::from_vec(out, (n, self.rows), &Device::Cpu)?)
    }

    /// `x @ self.T` for `n` rows of `cols` values in `x`, row-major (n, rows), with this
    /// kernel (never the tiles): each row's sums are the same whatever else is in `x`.
    pub fn dots(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        let [out] = Team::with(|team| dots_each(team, [self], x, n))?;
        Ok(out)
    }

    /// Weight rows per task: about four tasks per thread.
    fn rows_per_task(&self) -> usize {
        (self.rows / (4 * rayon::current_num_threads()).max(1)).clamp(8, 256)
    }

    /// `sums[i]` = the dot product of weight row `row` with activation row i.
    fn row_dots(&self, row: usize, x: &[f32], sums: &mut [f32]) {
        let blocks = self.cols / BLOCK;
        let body = self.kind.quant_bytes();
        let first = row * blocks;
        let w = Row {
            kind: self.kind,
            d: &self.d[first..first + blocks],
            m: &self.m[first..first + blocks],
            qs: &self.qs[first * body..(first + blocks) * body],
        };
        for (g, group) in sums.chunks_mut(ROW_GROUP).enumerate() {
            let xs = &x[g * ROW_GROUP * self.cols..];
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F (checked above).
                unsafe { avx512::dots(&w, xs, self.cols, group) };
                continue;
            }
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                unsafe { avx2::dots(&w, xs, self.cols, group) };
                continue;
            }
            w.portable_dots(xs, self.cols, group);
        }
    }
}

/// [`QuantMatrix::dots`] for several matrices over the same `x`, in one parallel loop
/// of `team`.
pub fn dots_each<const N: usize>(
    team: &Team,
    mats: [&QuantMatrix; N],
    x: &[f32],
    n: usize,
) -> Result<[Vec<f32>; N]> {
    for m in mats {
        ensure!(
            x.len() == n * m.cols,
            "{} inputs for {n} rows of a {} matrix",
            x.len(),
            m.cols
        );
    }
    if n == 0 {
        return Ok(mats.map(|_| Vec::new()));
    }
    // Each matrix computed as (rows, n) so each task writes one contiguous run of
    // weight rows.
    let mut by_row = mats.map(|m| vec![0f32; m.rows * n]);
    let mut tasks = Vec::new();
    for (m, out) in mats.iter().zip(by_row.iter_mut()) {
        let per_task = m.rows_per_task();
        tasks.extend(
            out.chunks_mut(per_task * n)
                .enumerate()
                .map(|(task, chunk)| (*m, task * per_task, chunk)),
        );
    }
    team.for_each(tasks, |(m, first, chunk)| {
        for (r, sums) in chunk.chunks_exact_mut(n).enumerate() {
            m.row_dots(first + r, x, sums);
        }
    })?;
    if n == 1 {
        return Ok(by_row);
    }
    let mut out = mats.map(|m| vec![0f32; n * m.rows]);
    for ((m, by_row), out) in mats.iter().zip(&by_row).zip(&mut out) {
        for (r, sums) in by_row.chunks_exact(n).enumerate() {
            for (i, &s) in sums.iter().enumerate() {
                out[i * m.rows + r] = s;
            }
        }
    }
    Ok(out)
}

/// `dots` for one SIMD build (`$feature`): up to ROW_GROUP activation rows against one
/// weight row, through `dots_n::<R>`, one body per row count so that the sums stay in
/// registers.
#[cfg(target_arch = "x86_64")]
macro_rules! dots_by_rows {
    ($feature:literal) => {
        /// As `Row::portable_dots`, in this module's vector width.
        #[target_feature(enable = $feature)]
        pub unsafe fn dots(w: &Row, x: &[f32], cols: usize, out: &mut [f32]) {
            // SAFETY: this function's own target-feature requirement.
            unsafe {
                match out.len() {
                    1 => dots_n::<1>(w, x, cols, out),
                    2 => dots_n::<2>(w, x, cols, out),
                    3 => dots_n::<3>(w, x, cols, out),
                    4 => dots_n::<4>(w, x, cols, out),
                    5 => dots_n::<5>(w, x, cols, out),
                    6 => dots_n::<6>(w, x, cols, out),
                    7 => dots_n::<7>(w, x, cols, out),
                    8 => dots_n::<8>(w, x, cols, out),
                    _ => unreachable!("at most ROW_GROUP rows"),
                }
            }
        }
    };
}

/// One weight row's blocks.
struct Row<'a> {
    kind: Kind,
    d: &'a [f32],
    m: &'a [f32],
    qs: &'a [u8],
}

impl Row<'_> {
    /// The shapes a SIMD kernel's unchecked loads rely on: `rows` activation rows of
    /// `cols` in `x`, one sum each in `out`, whole blocks in this row.
    #[cfg(target_arch = "x86_64")]
    fn check(&self, x: &[f32], cols: usize, rows: usize, out: usize) {
        assert!(x.len() >= rows * cols && out == rows);
        assert!(self.qs.len() == self.d.len() * self.kind.quant_bytes());
        assert!(self.m.len() == self.d.len() && self.d.len() * BLOCK == cols);
    }

    /// `out[r]` = this row against activation row r of `x` (rows `cols` long).
    fn portable_dots(&self, x: &[f32], cols: usize, out: &mut [f32]) {
        let body = self.kind.quant_bytes();
        let mut w = [0f32; BLOCK];
        out.fill(0.0);
        for (b, q) in self.qs.chunks_exact(body).enumerate() {
            self.kind.dequantize(q, self.d[b], self.m[b], &mut w);
            for (r, sum) in out.iter_mut().enumerate() {
                let xs = &x[r * cols + b * BLOCK..][..BLOCK];
                *sum += w.iter().zip(xs).map(|(w, x)| w * x).sum::<f32>();
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{BLOCK, Kind, PREFETCH, ROW_GROUP, Row};

    dots_by_rows!("avx2,fma");

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dots_n<const R: usize>(w: &Row, x: &[f32], cols: usize, out: &mut [f32]) {
        const { assert!(R <= ROW_GROUP) };
        let body = w.kind.quant_bytes();
        w.check(x, cols, R, out.len());
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..w.d.len() {
            // SAFETY: block b's bytes are in `qs` and 32 values of each of the R rows
            // in `x` (asserted above); all loads are unaligned ones.
            unsafe {
                let q = w.qs.as_ptr().add(b * body);
                _mm_prefetch::<_MM_HINT_T0>(q.wrapping_add(PREFETCH).cast());
                let (vd, vm) = (_mm256_set1_ps(w.d[b]), _mm256_set1_ps(w.m[b]));
                let ws = match w.kind {
                    Kind::Q4_1 => q4_1(q, vd, vm),
                    Kind::Q8_0 => q8_0(q, vd),
                };
                for (r, acc) in acc.iter_mut().enumerate() {
                    let p = x.as_ptr().add(r * cols + b * BLOCK);
                    let mut a = _mm256_fmadd_ps(ws[0], _mm256_loadu_ps(p), *acc);
                    a = _mm256_fmadd_ps(ws[1], _mm256_loadu_ps(p.add(8)), a);
                    a = _mm256_fmadd_ps(ws[2], _mm256_loadu_ps(p.add(16)), a);
                    *acc = _mm256_fmadd_ps(ws[3], _mm256_loadu_ps(p.add(24)), a);
                }
            }
        }
        for (sum, acc) in out.iter_mut().zip(acc) {
            let mut lanes = [0f32; 8];
            // SAFETY: 8 f32 into an 8-f32 array.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
            *sum = lanes.iter().sum();
        }
    }

    /// A Q4_1 block's 32 weights at `q` (16 bytes).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn q4_1(q: *const u8, d: __m256, m: __m256) -> [__m256; 4] {
        // SAFETY: the caller passes 16 readable bytes.
        let bytes = unsafe { _mm_loadu_si128(q.cast()) };
        let low = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(bytes, low);
        let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low);
        let w = |q: __m128i| _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q)), d, m);
        [
            w(lo),
            w(_mm_srli_si128(lo, 8)),
            w(hi),
            w(_mm_srli_si128(hi, 8)),
        ]
    }

    /// A Q8_0 block's 32 weights at `q` (32 bytes).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn q8_0(q: *const u8, d: __m256) -> [__m256; 4] {
        // SAFETY: the caller passes 32 readable bytes.
        let (a, b) = unsafe { (_mm_loadu_si128(q.cast()), _mm_loadu_si128(q.add(16).cast())) };
        let w = |q: __m128i| _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
        [w(a), w(_mm_srli_si128(a, 8)), w(b), w(_mm_srli_si128(b, 8))]
    }
}

/// As `avx2`, sixteen lanes at a time: a block's 32 weights are two registers, which
/// halves the instructions per block (the kernel is bound by them, not by memory).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{BLOCK, Kind, PREFETCH, ROW_GROUP, Row};

    dots_by_rows!("avx512f");

    #[target_feature(enable = "avx512f")]
    unsafe fn dots_n<const R: usize>(w: &Row, x: &[f32], cols: usize, out: &mut [f32]) {
        const { assert!(R <= ROW_GROUP) };
        let body = w.kind.quant_bytes();
        w.check(x, cols, R, out.len());
        let mut acc = [_mm512_setzero_ps(); R];
        for b in 0..w.d.len() {
            // SAFETY: block b's bytes are in `qs` and 32 values of each of the R rows
            // in `x` (asserted above); all loads are unaligned ones.
            unsafe {
                let q = w.qs.as_ptr().add(b * body);
                // The blocks 1 KiB on: the hardware prefetcher alone left a decoding step
                // waiting on these loads (23 -> 16 ms a step for one sequence, Intel Xeon).
                _mm_prefetch::<_MM_HINT_T0>(q.wrapping_add(PREFETCH).cast());
                let (vd, vm) = (_mm512_set1_ps(w.d[b]), _mm512_set1_ps(w.m[b]));
                let [low, high] = match w.kind {
                    Kind::Q4_1 => q4_1(q, vd, vm),
                    Kind::Q8_0 => q8_0(q, vd),
                };
                for (r, acc) in acc.iter_mut().enumerate() {
                    let p = x.as_ptr().add(r * cols + b * BLOCK);
                    let a = _mm512_fmadd_ps(low, _mm512_loadu_ps(p), *acc);
                    *acc = _mm512_fmadd_ps(high, _mm512_loadu_ps(p.add(16)), a);
                }
            }
        }
        for (sum, acc) in out.iter_mut().zip(acc) {
            *sum = _mm512_reduce_add_ps(acc);
        }
    }

    /// A Q4_1 block's 32 weights at `q` (16 bytes): elements 0-15 are the low nibbles.
    #[target_feature(enable = "avx512f")]
    unsafe fn q4_1(q: *const u8, d: __m512, m: __m512) -> [__m512; 2] {
        // SAFETY: the caller passes 16 readable bytes.
        let bytes = unsafe { _mm_loadu_si128(q.cast()) };
        let low = _mm_set1_epi8(0x0F);
        let w = |q: __m128i| _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q)), d, m);
        [
            w(_mm_and_si128(bytes, low)),
            w(_mm_and_si128(_mm_srli_epi16(bytes, 4), low)),
        ]
    }

    /// A Q8_0 block's 32 weights at `q` (32 bytes).
    #[target_feature(enable = "avx512f")]
    unsafe fn q8_0(q: *const u8, d: __m512) -> [__m512; 2] {
        // SAFETY: the caller passes 32 readable bytes.
        let (a, b) = unsafe { (_mm_loadu_si128(q.cast()), _mm_loadu_si128(q.add(16).cast())) };
        let w = |q: __m128i| _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), d);
        [w(a), w(b)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;

    /// Both kernels give what candle's dequantized f32 matmul gives, for both block
    /// types and batches that fill a row group, part of one and several.
    #[test]
    fn matches_the_dequantized_matmul() {
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            matches_for(dtype);
        }
    }

    fn matches_for(dtype: GgmlDType) {
        let w = Tensor::randn(0f32, 1.0, (40, 96), &Device::Cpu).unwrap();
        let qt = QTensor::quantize(&w, dtype).unwrap();
        let matrix = QuantMatrix::from_qtensor(&qt).unwrap().unwrap();
        let dense = qt.dequantize(&Device::Cpu).unwrap();
        assert!(matrix.dots(&[], 0).unwrap().is_empty());
        assert!(matrix.dots(&[0.; 95], 1).is_err());
        for n in [1, 3, 8, 19] {
            let x = Tensor::randn(0f32, 1.0, (n, 96), &Device::Cpu).unwrap();
            let want = x.matmul(&dense.t().unwrap()).unwrap();
            let got = matrix.forward(&x, false).unwrap();
            let diff = crate::llama::tests::max_abs_diff(&got, &want);
            assert!(diff < 1e-3, "{dtype:?} n={n}: {diff}");
            let xs: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            let mut portable = vec![0f32; n.min(ROW_GROUP)];
            let (blocks, body) = (96 / BLOCK, matrix.kind.quant_bytes());
            let row = Row {
                kind: matrix.kind,
                d: &matrix.d[..blocks],
                m: &matrix.m[..blocks],
                qs: &matrix.qs[..blocks * body],
            };
            row.portable_dots(&xs, 96, &mut portable);
            let first: Vec<f32> = want.t().unwrap().get(0).unwrap().to_vec1().unwrap();
            for (a, b) in portable.iter().zip(first) {
                assert!((a - b).abs() < 1e-3, "{dtype:?} portable n={n}: {a} vs {b}");
            }
        }
    }

    /// Passes over many rows through the bf16 tiles stay within bf16's rounding of the
    /// f32 product; decoding steps keep the exact kernel.
    #[test]
    fn tiles_match_the_dequantized_matmul_to_bf16() {
        if !amx::can_multiply() {
            eprintln!("skipped: neither AMX nor AVX-512 BF16 on this CPU");
            return;
        }
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let w = Tensor::randn(0f32, 1.0, (64, 96), &Device::Cpu).unwrap();
            let qt = QTensor::quantize(&w, dtype).unwrap();
            let matrix = QuantMatrix::from_qtensor(&qt)
                .unwrap()
                .unwrap()
                .with_tiles();
            assert!(matrix.tiles.is_some());
            let dense = qt.dequantize(&Device::Cpu).unwrap();
            for n in [1, 19, 40] {
                let x = Tensor::randn(0f32, 1.0, (n, 96), &Device::Cpu).unwrap();
                let want = x.matmul(&dense.t().unwrap()).unwrap();
                let tiles = matrix.forward(&x, true).unwrap();
                let scale = crate::llama::tests::max_abs(&want);
                let diff = crate::llama::tests::max_abs_diff(&tiles, &want);
                assert!(diff < 0.02 * scale, "{dtype:?} n={n}: {diff} of {scale}");
                let exact = matrix.forward(&x, false).unwrap();
                assert!(crate::llama::tests::max_abs_diff(&exact, &want) < 1e-3);
            }
        }
    }

    #[test]
    fn other_types_are_left_to_candle() {
        let w = Tensor::randn(0f32, 1.0, (8, 256), &Device::Cpu).unwrap();
        let qt = QTensor::quantize(&w, GgmlDType::Q6K).unwrap();
        assert!(QuantMatrix::from_qtensor(&qt).unwrap().is_none());
    }
}
