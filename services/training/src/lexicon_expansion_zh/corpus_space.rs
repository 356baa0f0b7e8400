//! The corpus space: positive PMI of word co-occurrence in the reviews, truncated by
//! a randomized SVD.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::CorpusSpaceConfig;

/// A sparse matrix in compressed rows.
pub(super) struct Csr {
    rows: usize,
    cols: usize,
    starts: Vec<usize>,
    columns: Vec<u32>,
    pub(super) values: Vec<f32>,
}

impl Csr {
    /// self (rows x cols) times x (cols x k, row-major).
    fn mul(&self, x: &[f32], k: usize) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * k];
        for r in 0..self.rows {
            let row = &mut out[r * k..(r + 1) * k];
            for e in self.starts[r]..self.starts[r + 1] {
                let (c, v) = (self.columns[e] as usize, self.values[e]);
                for (o, xi) in row.iter_mut().zip(&x[c * k..(c + 1) * k]) {
                    *o += v * xi;
                }
            }
        }
        out
    }

    /// selfᵀ (cols x rows) times x (rows x k, row-major).
    fn mul_t(&self, x: &[f32], k: usize) -> Vec<f32> {
        let mut out = vec![0f32; self.cols * k];
        for r in 0..self.rows {
            let xr = &x[r * k..(r + 1) * k];
            for e in self.starts[r]..self.starts[r + 1] {
                let (c, v) = (self.columns[e] as usize, self.values[e]);
                for (o, xi) in out[c * k..(c + 1) * k].iter_mut().zip(xr) {
                    *o += v * xi;
                }
            }
        }
        out
    }
}

/// Positive PMI of co-occurrence within `window` words, contexts smoothed by
/// `smoothing`. `docs` are word ids below `vocab`.
pub(super) fn ppmi(docs: &[Vec<u32>], vocab: usize, window: usize, smoothing: f64) -> Csr {
    let mut pairs: HashMap<u64, f32> = HashMap::new();
    for doc in docs {
        for (i, &a) in doc.iter().enumerate() {
            for &b in &doc[i + 1..doc.len().min(i + 1 + window)] {
                if a != b {
                    *pairs
                        .entry((u64::from(a) << 32) | u64::from(b))
                        .or_default() += 1.0;
                    *pairs
                        .entry((u64::from(b) << 32) | u64::from(a))
                        .or_default() += 1.0;
                }
            }
        }
    }
    let mut row_sum = vec![0f64; vocab];
    let mut col_sum = vec![0f64; vocab];
    let mut total = 0f64;
    for (&key, &c) in &pairs {
        let (a, b) = ((key >> 32) as usize, (key & 0xffff_ffff) as usize);
        row_sum[a] += f64::from(c);
        col_sum[b] += f64::from(c);
        total += f64::from(c);
    }
    let smoothed: Vec<f64> = col_sum.iter().map(|c| c.powf(smoothing)).collect();
    let smoothed_total: f64 = smoothed.iter().sum();
    let mut entries: Vec<(u32, u32, f32)> = pairs
        .into_iter()
        .filter_map(|(key, c)| {
            let (a, b) = ((key >> 32) as usize, (key & 0xffff_ffff) as usize);
            let pmi = (f64::from(c) / total).ln()
                - (row_sum[a] / total).ln()
                - (smoothed[b] / smoothed_total).ln();
            (pmi > 0.0).then_some((a as u32, b as u32, pmi as f32))
        })
        .collect();
    entries.sort_unstable_by_key(|e| (e.0, e.1));
    let mut starts = vec![0usize; vocab + 1];
    for e in &entries {
        starts[e.0 as usize + 1] += 1;
    }
    for r in 0..vocab {
        starts[r + 1] += starts[r];
    }
    Csr {
        rows: vocab,
        cols: vocab,
        starts,
        columns: entries.iter().map(|e| e.1).collect(),
        values: entries.iter().map(|e| e.2).collect(),
    }
}

/// Orthonormalises the columns of x (n x k, row-major) in place (modified
/// Gram-Schmidt; a column that vanishes is left zero).
fn orthonormalise(x: &mut [f32], n: usize, k: usize) {
    for j in 0..k {
        for p in 0..j {
            let dot: f64 = (0..n)
                .map(|i| f64::from(x[i * k + j]) * f64::from(x[i * k + p]))
                .sum();
            for i in 0..n {
                x[i * k + j] -= dot as f32 * x[i * k + p];
            }
        }
        let norm = (0..n)
            .map(|i| f64::from(x[i * k + j]).powi(2))
            .sum::<f64>()
            .sqrt();
        for i in 0..n {
            x[i * k + j] = if norm > 1e-12 {
                (f64::from(x[i * k + j]) / norm) as f32
            } else {
                0.0
            };
        }
    }
}

/// Eigenvalues and eigenvectors (columns of the returned row-major k x k matrix)
/// of a symmetric matrix, by cyclic Jacobi rotations.
pub(super) fn symmetric_eigen(a: &[f64], k: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0f64; k * k];
    for i in 0..k {
        v[i * k + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..k)
            .flat_map(|i| (0..k).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * k + j].powi(2))
            .sum();
        let diag: f64 = (0..k).map(|i| a[i * k + i].powi(2)).sum();
        if off <= 1e-22 * diag.max(1e-300) {
            break;
        }
        for p in 0..k {
            for q in p + 1..k {
                let apq = a[p * k + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * k + q] - a[p * k + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for r in 0..k {
                    let (arp, arq) = (a[r * k + p], a[r * k + q]);
                    a[r * k + p] = c * arp - s * arq;
                    a[r * k + q] = s * arp + c * arq;
                }
                for r in 0..k {
                    let (apr, aqr) = (a[p * k + r], a[q * k + r]);
                    a[p * k + r] = c * apr - s * aqr;
                    a[q * k + r] = s * apr + c * aqr;
                }
                for r in 0..k {
                    let (vrp, vrq) = (v[r * k + p], v[r * k + q]);
                    v[r * k + p] = c * vrp - s * vrq;
                    v[r * k + q] = s * vrp + c * vrq;
                }
            }
        }
    }
    ((0..k).map(|i| a[i * k + i]).collect(), v)
}

/// Rank-`dim` word vectors U Σ^p of a sparse matrix by randomized SVD (Halko,
/// Martinsson & Tropp 2011), rows L2-normalised.
pub(super) fn truncated_svd(m: &Csr, config: &CorpusSpaceConfig, seed: u64) -> Vec<f32> {
    let n = m.rows;
    let k = (config.dim + 20).min(n.max(1));
    let mut rng = StdRng::seed_from_u64(seed);
    let omega: Vec<f32> = (0..m.cols * k)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    let mut q = m.mul(&omega, k);
    orthonormalise(&mut q, n, k);
    for _ in 0..config.power_iterations {
        let mut z = m.mul_t(&q, k);
        orthonormalise(&mut z, m.cols, k);
        q = m.mul(&z, k);
        orthonormalise(&mut q, n, k);
    }
    // B = Qᵀ M (k x cols); B Bᵀ = W Λ Wᵀ; M ≈ Q W Σ Vᵀ with Σ = sqrt(Λ).
    let bt = m.mul_t(&q, k); // cols x k
    let mut bbt = vec![0f64; k * k];
    for row in bt.chunks_exact(k) {
        for i in 0..k {
            for j in i..k {
                bbt[i * k + j] += f64::from(row[i]) * f64::from(row[j]);
            }
        }
    }
    for i in 0..k {
        for j in 0..i {
            bbt[i * k + j] = bbt[j * k + i];
        }
    }
    let (values, w) = symmetric_eigen(&bbt, k);
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|a, b| values[*b].total_cmp(&values[*a]));
    let dim = config.dim.min(k);
    let scale: Vec<f64> = order[..dim]
        .iter()
        .map(|&c| {
            values[c]
                .max(0.0)
                .sqrt()
                .powf(f64::from(config.eigen_weight))
        })
        .collect();
    let mut out = vec![0f32; n * dim];
    for r in 0..n {
        let qr = &q[r * k..(r + 1) * k];
        for (d, &c) in order[..dim].iter().enumerate() {
            let u: f64 = (0..k).map(|i| f64::from(qr[i]) * w[i * k + c]).sum();
            out[r * dim + d] = (u * scale[d]) as f32;
        }
    }
    normalise_rows(&mut out, dim);
    out
}

pub(super) fn normalise_rows(v: &mut [f32], dim: usize) {
    for row in v.chunks_exact_mut(dim) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 1e-12 {
            row.iter_mut().for_each(|x| *x /= norm);
        }
    }
}
