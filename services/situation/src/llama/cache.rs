//! One sequence's keys and values for every layer, kept in plain vectors so that a
//! decoding step reads them where they are (no tensor per sequence, head and layer).

use anyhow::{Result, ensure};
use candle_core::{Device, Tensor};

/// Keys and values of one layer, laid out [kv head][position][head dim] with room for
/// `capacity` positions per head.
struct LayerCache {
    k: Vec<f32>,
    v: Vec<f32>,
}

/// One sequence's cache, preallocated to its longest length.
pub struct SeqCache {
    layers: Vec<LayerCache>,
    len: usize,
    capacity: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl SeqCache {
    pub(super) fn new(layers: usize, kv_heads: usize, head_dim: usize, capacity: usize) -> Self {
        let size = kv_heads * capacity * head_dim;
        // One allocation each (not clones of one layer, which would copy its zeros).
        let layer = |_| LayerCache {
            k: vec![0.; size],
            v: vec![0.; size],
        };
        Self {
            layers: (0..layers).map(layer).collect(),
            len: 0,
            capacity,
            kv_heads,
            head_dim,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A new cache with room for `capacity` positions holding the first `len` of these.
    pub(super) fn fork(&self, len: usize, capacity: usize) -> Result<Self> {
        ensure!(len <= self.len, "a fork cannot be longer than its prefix");
        let capacity = capacity.max(len);
        let mut fork = Self::new(self.layers.len(), self.kv_heads, self.head_dim, capacity);
        let run = len * self.head_dim;
        for (dst, src) in fork.layers.iter_mut().zip(&self.layers) {
            for g in 0..self.kv_heads {
                let (to, from) = (g * capacity * self.head_dim, self.head_start(g));
                dst.k[to..to + run].copy_from_slice(&src.k[from..from + run]);
                dst.v[to..to + run].copy_from_slice(&src.v[from..from + run]);
            }
        }
        fork.len = len;
        Ok(fork)
    }

    /// Writes layer `layer`'s keys and values of `t` new positions after the `len()`
    /// already counted; `k` and `v` are laid out [kv head][t][head dim]. They count
    /// once [`commit`](Self::commit) is called after the last layer, so a pass that
    /// fails half way leaves the cache as it was.
    pub(super) fn write(&mut self, layer: usize, k: &[f32], v: &[f32], t: usize) -> Result<()> {
        let run = t * self.head_dim;
        ensure!(
            self.len + t <= self.capacity,
            "the sequence does not fit its cache"
        );
        ensure!(
            k.len() == self.kv_heads * run && v.len() == k.len(),
            "keys of the wrong size for the cache"
        );
        let at = self.len * self.head_dim;
        let cache = &mut self.layers[layer];
        for g in 0..self.kv_heads {
            let to = g * self.capacity * self.head_dim + at;
            cache.k[to..to + run].copy_from_slice(&k[g * run..(g + 1) * run]);
            cache.v[to..to + run].copy_from_slice(&v[g * run..(g + 1) * run]);
        }
        Ok(())
    }

    /// Counts the `t` positions the last pass wrote into every layer.
    pub(super) fn commit(&mut self, t: usize) {
        self.len += t;
    }

    /// Keys and values of kv head `g` in `layer` for positions `0..upto`, one row of
    /// `head_dim` per position.
    pub(super) fn head(&self, layer: usize, g: usize, upto: usize) -> (&[f32], &[f32]) {
        let from = self.head_start(g);
        let run = upto * self.head_dim;
        let cache = &self.layers[layer];
        (&cache.k[from..from + run], &cache.v[from..from + run])
    }

    /// Keys and values of `layer` for positions `0..upto` as tensors of shape
    /// (1, kv heads, upto, head dim), for a pass over many tokens.
    pub(super) fn tensors(
        &self,
        layer: usize,
        upto: usize,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for g in 0..self.kv_heads {
            let (kg, vg) = self.head(layer, g, upto);
            k.extend_from_slice(kg);
            v.extend_from_slice(vg);
        }
        let shape = (1, self.kv_heads, upto, self.head_dim);
        Ok((
            Tensor::from_vec(k, shape, device)?,
            Tensor::from_vec(v, shape, device)?,
        ))
    }

    fn head_start(&self, g: usize) -> usize {
        g * self.capacity * self.head_dim
    }
}
