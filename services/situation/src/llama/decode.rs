//! One decoding step for a batch of sequences, in plain loops over rows of f32.
//!
//! A step moves one token per sequence through 30 layers. As candle ops that was about
//! 25 small ops per layer plus ten per sequence for attention, each allocating its
//! output and many handing a tiny matmul to the thread pool: at 16 sequences those
//! cost as much as the weight products themselves. Here the weight products are the
//! kernel's (or candle's for other formats) and the rest is loops that read the cache
//! in place; every row is computed on its own, so a sequence's logits do not depend on
//! what is decoded beside it.

use anyhow::{Result, ensure};
use candle_core::Tensor;
use rayon::prelude::*;

use super::{Model, SeqCache, Weight, linear};

impl Model {
    pub(super) fn step_here(&self, tokens: &[u32], caches: &mut [&mut SeqCache]) -> Result<Tensor> {
        let b = tokens.len();
        ensure!(b > 0 && b == caches.len(), "one token per sequence");
        for c in caches.iter() {
            ensure!(
                c.len() < c.capacity(),
                "a sequence is at its cache capacity"
            );
        }
        let (dim, kv_dim) = (self.n_head * self.head_dim, self.n_kv_head * self.head_dim);
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x: Vec<f32> = self
            .embed
            .embeddings()
            .index_select(&ids, 0)?
            .flatten_all()?
            .to_vec1()?;
        for (l, layer) in self.layers.iter().enumerate() {
            let h = rms_norm(&x, &layer.attn_norm, self.eps);
            let mut q = self.rows(&layer.wq, &h, b)?;
            let mut k = self.rows(&layer.wk, &h, b)?;
            let v = self.rows(&layer.wv, &h, b)?;
            for (i, cache) in caches.iter_mut().enumerate() {
                let pos = cache.len();
                self.rope(&mut q[i * dim..(i + 1) * dim], pos);
                self.rope(&mut k[i * kv_dim..(i + 1) * kv_dim], pos);
                let row = i * kv_dim..(i + 1) * kv_dim;
                cache.write(l, &k[row.clone()], &v[row], 1)?;
            }
            let y = self.attend(l, &q, caches);
            add(&mut x, &self.rows(&layer.wo, &y, b)?);
            let h = rms_norm(&x, &layer.ffn_norm, self.eps);
            let mut gate = self.rows(&layer.w_gate, &h, b)?;
            let up = self.rows(&layer.w_up, &h, b)?;
            gate.par_chunks_mut(1024)
                .zip(up.par_chunks(1024))
                .for_each(|(g, u)| {
                    for (g, u) in g.iter_mut().zip(u) {
                        *g = *g / (1. + (-*g).exp()) * u;
                    }
                });
            add(&mut x, &self.rows(&layer.w_down, &gate, b)?);
        }
        for cache in caches.iter_mut() {
            cache.commit(1);
        }
        let logits = self.rows(&self.output, &rms_norm(&x, &self.norm, self.eps), b)?;
        let vocab = logits.len() / b;
        Ok(Tensor::from_vec(logits, (b, vocab), &self.device)?)
    }

    /// `x @ w.T` for `n` rows, row-major.
    fn rows(&self, w: &Weight, x: &[f32], n: usize) -> Result<Vec<f32>> {
        match w {
            Weight::Q4(m) => m.dots(x, n),
            Weight::Candle(_) => {
                let x = Tensor::from_slice(x, (n, x.len() / n), &self.device)?;
                Ok(linear(w, &x, false)?.flatten_all()?.to_vec1()?)
            }
        }
    }

    /// Rotates each head of one position's row in place, pairs interleaved (as
    /// candle's `rope_i`).
    fn rope(&self, row: &mut [f32], pos: usize) {
        let half = self.head_dim / 2;
        let (cos, sin) = (
            &self.cos[pos * half..(pos + 1) * half],
            &self.sin[pos * half..(pos + 1) * half],
        );
        for head in row.chunks_exact_mut(self.head_dim) {
            for ((pair, &c), &s) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
                let (a, b) = (pair[0], pair[1]);
                pair[0] = a * c - b * s;
                pair[1] = a * s + b * c;
            }
        }
    }

    /// Each sequence's query row (all heads) against its cached keys and values of
    /// layer `l`, the newest position included: rows of n_head * head_dim.
    fn attend(&self, l: usize, q: &[f32], caches: &[&mut SeqCache]) -> Vec<f32> {
        let hd = self.head_dim;
        let n_rep = self.n_head / self.n_kv_head;
        let scale = 1. / (hd as f32).sqrt();
        let mut y = vec![0f32; q.len()];
        // One task per sequence and kv head: its n_rep query heads share the keys.
        y.par_chunks_mut(n_rep * hd)
            .zip(q.par_chunks(n_rep * hd))
            .enumerate()
            .for_each(|(task, (y, q))| {
                let cache = &caches[task / self.n_kv_head];
                let (keys, values) = cache.head(l, task % self.n_kv_head, cache.len() + 1);
                let mut att = vec![0f32; keys.len() / hd];
                for (y, q) in y.chunks_exact_mut(hd).zip(q.chunks_exact(hd)) {
                    for (a, k) in att.iter_mut().zip(keys.chunks_exact(hd)) {
                        *a = dot(q, k) * scale;
                    }
                    softmax(&mut att);
                    for (&a, v) in att.iter().zip(values.chunks_exact(hd)) {
                        for (y, v) in y.iter_mut().zip(v) {
                            *y += a * v;
                        }
                    }
                }
            });
        y
    }
}

/// Root-mean-square norm of each row of `weight.len()` values, times `weight` (as
/// candle's `rms_norm`).
pub(super) fn rms_norm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let n = weight.len();
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(n) {
        let m = (row.iter().map(|v| v * v).sum::<f32>() / n as f32 + eps).sqrt();
        out.extend(row.iter().zip(weight).map(|(v, w)| v / m * w));
    }
    out
}

fn add(x: &mut [f32], y: &[f32]) {
    for (x, y) in x.iter_mut().zip(y) {
        *x += y;
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}
