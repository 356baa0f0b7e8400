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
use empathy_simd::fast_math::exp;
use empathy_simd::widest;

use super::{Model, SeqCache, Weight, linear};
use crate::{
    quant_matrix::{QuantMatrix, dots_each},
    team::Team,
};

impl Model {
    pub(super) fn step_here(
        &self,
        team: &Team,
        tokens: &[u32],
        caches: &mut [&mut SeqCache],
    ) -> Result<Tensor> {
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
            let [mut q, mut k, v] = self.rows(team, [&layer.wq, &layer.wk, &layer.wv], &h, b)?;
            for (i, cache) in caches.iter_mut().enumerate() {
                let pos = cache.len();
                self.rope(&mut q[i * dim..(i + 1) * dim], pos);
                self.rope(&mut k[i * kv_dim..(i + 1) * kv_dim], pos);
                let row = i * kv_dim..(i + 1) * kv_dim;
                cache.write(l, &k[row.clone()], &v[row], 1)?;
            }
            let y = self.attend(team, l, &q, caches)?;
            let [o] = self.rows(team, [&layer.wo], &y, b)?;
            add(&mut x, &o);
            let h = rms_norm(&x, &layer.ffn_norm, self.eps);
            let [mut gate, up] = self.rows(team, [&layer.w_gate, &layer.w_up], &h, b)?;
            silu_times(&mut gate, &up);
            let [down] = self.rows(team, [&layer.w_down], &gate, b)?;
            add(&mut x, &down);
        }
        for cache in caches.iter_mut() {
            cache.commit(1);
        }
        let [logits] = self.rows(team, [&self.output], &rms_norm(&x, &self.norm, self.eps), b)?;
        let vocab = logits.len() / b;
        Ok(Tensor::from_vec(logits, (b, vocab), &self.device)?)
    }

    /// `x @ w.T` for `n` rows, row-major, for each of `ws`: in one parallel pass where
    /// all are in our Q4 kernel.
    fn rows<const N: usize>(
        &self,
        team: &Team,
        ws: [&Weight; N],
        x: &[f32],
        n: usize,
    ) -> Result<[Vec<f32>; N]> {
        let q4: Vec<&QuantMatrix> = ws
            .iter()
            .filter_map(|w| match w {
                Weight::Q4(m) => Some(m),
                Weight::Candle(_) => None,
            })
            .collect();
        if let Ok(q4) = <[&QuantMatrix; N]>::try_from(q4) {
            return dots_each(team, q4, x, n);
        }
        let mut out = std::array::from_fn(|_| Vec::new());
        let x = Tensor::from_slice(x, (n, x.len() / n), &self.device)?;
        for (out, w) in out.iter_mut().zip(ws) {
            *out = linear(w, &x, false)?.flatten_all()?.to_vec1()?;
        }
        Ok(out)
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
    fn attend(
        &self,
        team: &Team,
        l: usize,
        q: &[f32],
        caches: &[&mut SeqCache],
    ) -> Result<Vec<f32>> {
        let hd = self.head_dim;
        let n_rep = self.n_head / self.n_kv_head;
        let scale = 1. / (hd as f32).sqrt();
        let mut y = vec![0f32; q.len()];
        // One task per sequence and kv head: its n_rep query heads share the keys.
        let tasks: Vec<_> = y
            .chunks_mut(n_rep * hd)
            .zip(q.chunks(n_rep * hd))
            .enumerate()
            .collect();
        team.for_each(tasks, |(task, (y, q))| {
            let cache = &caches[task / self.n_kv_head];
            let (keys, values) = cache.head(l, task % self.n_kv_head, cache.len() + 1);
            let mut att = vec![0f32; keys.len() / hd];
            attend_group(q, keys, values, y, &mut att, hd, scale);
        })?;
        Ok(y)
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

/// Summed in 16 lanes, so that the compiler vectorises it.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let (a16, b16) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = a16
        .remainder()
        .iter()
        .zip(b16.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in a16.zip(b16) {
        for ((l, a), b) in lanes.iter_mut().zip(a).zip(b) {
            *l += a * b;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

widest! {
    /// Query heads (rows of `hd` in `q`) that share one kv head against its
    /// `keys` and `values` (rows of `hd` per position), into `y`; `att` holds one
    /// score per position.
    fn attend_group(
        q: &[f32],
        keys: &[f32],
        values: &[f32],
        y: &mut [f32],
        att: &mut [f32],
        hd: usize,
        scale: f32
    ) => attend_group_body
}

#[inline(always)]
fn attend_group_body(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    y: &mut [f32],
    att: &mut [f32],
    hd: usize,
    scale: f32,
) {
    for (y, q) in y.chunks_exact_mut(hd).zip(q.chunks_exact(hd)) {
        for (a, k) in att.iter_mut().zip(keys.chunks_exact(hd)) {
            *a = dot(q, k) * scale;
        }
        softmax(att);
        for (&a, v) in att.iter().zip(values.chunks_exact(hd)) {
            for (y, v) in y.iter_mut().zip(v) {
                *y += a * v;
            }
        }
    }
}

#[inline(always)]
fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.;
    for v in x.iter_mut() {
        *v = exp(*v - max);
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

widest! {
    /// `gate` = silu(`gate`) * `up`, elementwise.
    fn silu_times(gate: &mut [f32], up: &[f32]) => silu_times_body
}

#[inline(always)]
fn silu_times_body(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1. + exp(-*g)) * u;
    }
}
