//! Fits a version's typicality (`empathy_model::typicality`) on the embeddings of the
//! texts it is trained on: their mean, the Cholesky factor of their covariance, and the
//! distance that QUANTILE of them stay within.

use anyhow::{Context, ensure};
use empathy_model::typicality::{QUANTILE, Typicality};
use nalgebra::{DMatrix, DVector};

/// Added to the covariance's diagonal: MiniLM's 384 dimensions are not all used by
/// a few thousand tweets, and a singular covariance has no inverse.
const RIDGE: f64 = 1e-3;

/// `text` holds rows of `dim` values; `rows` are the training texts'.
pub fn fit(text: &[f32], dim: usize, rows: &[usize]) -> anyhow::Result<Typicality> {
    ensure!(
        rows.len() > dim,
        "{} texts cannot describe {dim} dimensions",
        rows.len()
    );
    let row = |i: usize| {
        DVector::from_iterator(dim, text[i * dim..(i + 1) * dim].iter().map(|&x| x as f64))
    };
    let n = rows.len() as f64;
    let mean = rows
        .iter()
        .fold(DVector::zeros(dim), |sum, &i| sum + row(i))
        / n;
    let mut covariance = DMatrix::<f64>::identity(dim, dim) * RIDGE;
    for &i in rows {
        let centred = row(i) - &mean;
        covariance += &centred * centred.transpose() / n;
    }
    let lower = covariance
        .cholesky()
        .context("the training texts' covariance is not positive definite")?
        .unpack();
    let whiten = lower
        .try_inverse()
        .context("the covariance's Cholesky factor has no inverse")?;
    let mut distances: Vec<f64> = rows
        .iter()
        .map(|&i| (&whiten * (row(i) - &mean)).norm())
        .collect();
    distances.sort_by(f64::total_cmp);
    let at = ((QUANTILE as f64 * distances.len() as f64) as usize).min(distances.len() - 1);
    Typicality::new(
        mean.iter().map(|&m| m as f32).collect(),
        // nalgebra is column-major; Typicality wants rows.
        whiten.transpose().iter().map(|&w| w as f32).collect(),
        distances[at] as f32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_far_from_the_training_texts_is_unusual_and_theirs_mostly_are_not()
    -> anyhow::Result<()> {
        // 400 points on a tilted plane in 3-D with some noise off it.
        let mut text = Vec::new();
        let mut state = 7u64;
        let mut noise = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
        };
        for _ in 0..400 {
            let (a, b) = (noise() * 4.0, noise() * 4.0);
            text.extend([a, b, a + b + 0.05 * noise()]);
        }
        let rows: Vec<usize> = (0..400).collect();
        let t = fit(&text, 3, &rows)?;
        let usual = rows
            .iter()
            .filter(|&&i| !t.unusual(&text[i * 3..i * 3 + 3]))
            .count();
        assert!((370..=385).contains(&usual), "{usual} of 400 usual");
        // Inside the training range on every axis, but off the plane they lie on.
        assert!(t.unusual(&[1.0, 1.0, -2.0]));
        assert!(!t.unusual(&[1.0, 1.0, 2.0]));
        Ok(())
    }
}
