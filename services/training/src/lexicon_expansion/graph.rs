//! The k-nearest-neighbour word graph, label propagation over it, and the held-out
//! evaluation of the propagation.

use anyhow::ensure;
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// A weighted undirected graph as adjacency lists.
#[derive(Debug, Clone)]
pub struct Graph {
    pub neighbours: Vec<Vec<(usize, f32)>>,
}

impl Graph {
    /// From undirected weighted edges (each listed once).
    pub fn from_edges(nodes: usize, edges: &[(usize, usize, f32)]) -> Graph {
        let mut neighbours = vec![Vec::new(); nodes];
        for &(a, b, w) in edges {
            neighbours[a].push((b, w));
            neighbours[b].push((a, w));
        }
        Graph { neighbours }
    }
}

/// The k-nearest-neighbour graph of L2-normalised rows (cosine similarity),
/// symmetrised; negative similarities get no edge.
pub fn knn_graph(vectors: &[f32], dim: usize, k: usize) -> anyhow::Result<Graph> {
    ensure!(
        dim > 0 && vectors.len().is_multiple_of(dim),
        "bad vector width"
    );
    let n = vectors.len() / dim;
    let all = Tensor::from_slice(vectors, (n, dim), &Device::Cpu)?;
    let all_t = all.t()?.contiguous()?;
    let mut edges = Vec::with_capacity(n * k);
    const BLOCK: usize = 512;
    for start in (0..n).step_by(BLOCK) {
        let rows = BLOCK.min(n - start);
        let sims = all
            .narrow(0, start, rows)?
            .matmul(&all_t)?
            .to_vec2::<f32>()?;
        for (r, row) in sims.into_iter().enumerate() {
            let i = start + r;
            let mut order: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            let kk = k.min(order.len());
            if kk == 0 {
                continue;
            }
            order.select_nth_unstable_by(kk - 1, |a, b| row[*b].total_cmp(&row[*a]));
            for &j in &order[..kk] {
                if row[j] > 0.0 {
                    edges.push((i, j, row[j]));
                }
            }
        }
    }
    Ok(Graph::from_edges(n, &edges))
}

/// Spreads `seeds` (a class per labelled node) over the graph: unlabelled nodes
/// take the weighted mean of their neighbours' class distributions, seeds stay
/// clamped. Returns, per node, (class, confidence = top-1 minus top-2 probability),
/// or None for nodes no label reached.
pub fn propagate(
    graph: &Graph,
    seeds: &[Option<usize>],
    classes: usize,
    iterations: usize,
) -> Vec<Option<(usize, f32)>> {
    propagate_with(graph, seeds, classes, iterations, false)
}

/// `propagate`, optionally with class-mass normalisation (Zhu, Ghahramani & Lafferty
/// 2003): each class's column over the unlabelled nodes is rescaled so that its share
/// of the mass matches the class's share of the seeds, which keeps the largest seed
/// class from absorbing everything far from any seed.
pub fn propagate_with(
    graph: &Graph,
    seeds: &[Option<usize>],
    classes: usize,
    iterations: usize,
    class_mass_normalisation: bool,
) -> Vec<Option<(usize, f32)>> {
    let n = graph.neighbours.len();
    assert_eq!(seeds.len(), n, "one seed slot per node");
    let mut f = vec![0f32; n * classes];
    for (i, s) in seeds.iter().enumerate() {
        if let Some(c) = s {
            f[i * classes + c] = 1.0;
        }
    }
    let mut next = f.clone();
    for _ in 0..iterations {
        for i in 0..n {
            if seeds[i].is_some() {
                continue;
            }
            let row = &mut next[i * classes..(i + 1) * classes];
            row.fill(0.0);
            let mut total = 0f32;
            for &(j, w) in &graph.neighbours[i] {
                total += w;
                for c in 0..classes {
                    row[c] += w * f[j * classes + c];
                }
            }
            if total > 0.0 {
                row.iter_mut().for_each(|x| *x /= total);
            }
        }
        std::mem::swap(&mut f, &mut next);
        // Seed rows are identical in both buffers (never rewritten).
    }
    if class_mass_normalisation {
        let mut prior = vec![0f32; classes];
        let mut mass = vec![0f32; classes];
        for (i, s) in seeds.iter().enumerate() {
            match s {
                Some(c) => prior[*c] += 1.0,
                None => {
                    let row = &f[i * classes..(i + 1) * classes];
                    let total: f32 = row.iter().sum();
                    if total > 1e-9 {
                        for c in 0..classes {
                            mass[c] += row[c] / total;
                        }
                    }
                }
            }
        }
        let scale: Vec<f32> = (0..classes)
            .map(|c| {
                if mass[c] > 1e-9 {
                    prior[c] / mass[c]
                } else {
                    0.0
                }
            })
            .collect();
        for (i, s) in seeds.iter().enumerate() {
            if s.is_none() {
                for c in 0..classes {
                    f[i * classes + c] *= scale[c];
                }
            }
        }
    }
    (0..n)
        .map(|i| {
            let row = &f[i * classes..(i + 1) * classes];
            let mass: f32 = row.iter().sum();
            if mass <= 1e-9 {
                return None;
            }
            let mut order: Vec<usize> = (0..classes).collect();
            order.sort_by(|a, b| row[*b].total_cmp(&row[*a]));
            let second = order.get(1).map(|&c| row[c]).unwrap_or(0.0);
            Some((order[0], (row[order[0]] - second) / mass))
        })
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeldOut {
    pub seeds: usize,
    pub held_out: usize,
    /// Held-out seeds whose predicted label matches (nodes no label reached count
    /// as the majority class).
    pub accuracy: f64,
    /// Always predicting the most frequent class of the seeds kept.
    pub majority_accuracy: f64,
    pub majority_class: usize,
    /// Share of held-out seeds that propagation reached at all.
    pub coverage: f64,
    /// Per class: share of its held-out seeds predicted right (recall).
    #[serde(default)]
    pub class_recall: Vec<f64>,
}

/// Holds out `fraction` of the labelled nodes (shuffled with `seed`), propagates
/// from the rest (optionally with class-mass normalisation, see `propagate_with`) and
/// scores the held-out ones.
pub fn evaluate_held_out(
    graph: &Graph,
    seeds: &[Option<usize>],
    classes: usize,
    iterations: usize,
    fraction: f64,
    seed: u64,
    class_mass_normalisation: bool,
) -> HeldOut {
    let mut labelled: Vec<usize> = (0..seeds.len()).filter(|&i| seeds[i].is_some()).collect();
    labelled.shuffle(&mut StdRng::seed_from_u64(seed));
    let held = ((labelled.len() as f64 * fraction).round() as usize).min(labelled.len());
    let held_out = &labelled[..held];
    let mut kept = seeds.to_vec();
    for &i in held_out {
        kept[i] = None;
    }
    let mut counts = vec![0usize; classes];
    for c in kept.iter().flatten() {
        counts[*c] += 1;
    }
    let majority = (0..classes).max_by_key(|&c| counts[c]).unwrap_or(0);
    let predicted = propagate_with(graph, &kept, classes, iterations, class_mass_normalisation);
    let (mut right, mut majority_right, mut reached) = (0usize, 0usize, 0usize);
    let mut per_class = vec![(0usize, 0usize); classes];
    for &i in held_out {
        let truth = seeds[i].unwrap_or(usize::MAX);
        let guess = match predicted[i] {
            Some((c, _)) => {
                reached += 1;
                c
            }
            None => majority,
        };
        right += usize::from(guess == truth);
        majority_right += usize::from(majority == truth);
        if let Some(slot) = per_class.get_mut(truth) {
            slot.0 += usize::from(guess == truth);
            slot.1 += 1;
        }
    }
    let share = |x: usize| {
        if held == 0 {
            0.0
        } else {
            x as f64 / held as f64
        }
    };
    HeldOut {
        seeds: labelled.len(),
        held_out: held,
        accuracy: share(right),
        majority_accuracy: share(majority_right),
        majority_class: majority,
        coverage: share(reached),
        class_recall: per_class
            .iter()
            .map(|&(r, t)| if t == 0 { 0.0 } else { r as f64 / t as f64 })
            .collect(),
    }
}
