//! The training loop: mini-batches, loss, early stopping, and batch prediction.

use std::time::Instant;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::TrainConfig;
use crate::metrics::Confusion;
use empathy_corpus::Split;
use empathy_model::batch::{BatchBuilder, ContextTurn, Example, Speaker};
use empathy_model::network::{Dims, FusionNetwork, LEXICON, MODALITIES, NetworkOutput, TEXT};

/// Features of every example, row-major.
pub(super) struct Features {
    pub text: Vec<f32>,
    pub lexicon: Vec<f32>,
    pub vader: Vec<f32>,
    /// Per example, embeddings of imagined situations (empty where there are none).
    pub situations: Vec<Vec<Vec<f32>>>,
    /// Per example, its previous turns as rows of `text`, oldest first (empty where
    /// there are none; see `dialogues`).
    pub context: Vec<Vec<(usize, Speaker)>>,
    pub dims: Dims,
}

impl Features {
    fn example(&self, i: usize) -> Example<'_> {
        let (t, l) = (self.dims.text, self.dims.lexicon);
        Example {
            text: Some(&self.text[i * t..(i + 1) * t]),
            lexicon: &self.lexicon[i * l..(i + 1) * l],
            speech: None,
            image: None,
            situations: self.situations.get(i).map_or(&[], Vec::as_slice),
            context: self.context.get(i).map_or(Vec::new(), |turns| {
                turns
                    .iter()
                    .map(|&(row, speaker)| ContextTurn {
                        embedding: &self.text[row * t..(row + 1) * t],
                        speaker,
                    })
                    .collect()
            }),
        }
    }
}

/// Which tokens an example shows the network besides the lexicon.
#[derive(Clone, Copy)]
pub(super) struct Shown {
    pub text: bool,
    pub situations: bool,
}

impl Shown {
    /// Previous turns are always shown where an example has them.
    fn slot(self, slot: usize, dims: &Dims) -> bool {
        slot == LEXICON
            || (self.text && slot == TEXT)
            || slot >= dims.context_slot(0)
            || (self.situations && slot >= MODALITIES.len())
    }
}

/// Predicted labels for `indices`, showing the network the `shown` tokens.
pub(super) fn predict(
    network: &FusionNetwork,
    features: &Features,
    indices: &[usize],
    shown: Shown,
) -> anyhow::Result<Vec<usize>> {
    predict_rows(
        network,
        indices,
        |i| features.example(i),
        |slot| shown.slot(slot, &features.dims),
    )
}

/// Predicted labels for `indices` with the text token shown, and the turns before
/// only if `read_context`.
pub(super) fn predict_with_context(
    network: &FusionNetwork,
    features: &Features,
    indices: &[usize],
    read_context: bool,
) -> anyhow::Result<Vec<usize>> {
    let shown = Shown {
        text: true,
        situations: false,
    };
    let first_context = features.dims.context_slot(0);
    predict_rows(
        network,
        indices,
        |i| features.example(i),
        |slot| shown.slot(slot, &features.dims) && (read_context || slot < first_context),
    )
}

/// Predicted sentiment labels of the examples at `indices`, in chunks; `use_token`
/// says which token slots the network sees.
pub(super) fn predict_rows<'e>(
    network: &FusionNetwork,
    indices: &[usize],
    example: impl Fn(usize) -> Example<'e>,
    use_token: impl Fn(usize) -> bool,
) -> anyhow::Result<Vec<usize>> {
    let logits = logits_rows(network, indices, example, use_token)?;
    Ok(logits.iter().map(|l| empathy_model::top_index(l)).collect())
}

/// Sentiment logits of the examples at `indices` as serving computes them (no topic
/// prior), showing the network the `shown` tokens.
pub(super) fn logits(
    network: &FusionNetwork,
    features: &Features,
    indices: &[usize],
    shown: Shown,
) -> anyhow::Result<Vec<[f32; 3]>> {
    logits_rows(
        network,
        indices,
        |i| features.example(i),
        |slot| shown.slot(slot, &features.dims),
    )
}

/// Sentiment logits of the examples at `indices`, in chunks; `use_token` says which
/// token slots the network sees.
pub(super) fn logits_rows<'e>(
    network: &FusionNetwork,
    indices: &[usize],
    example: impl Fn(usize) -> Example<'e>,
    use_token: impl Fn(usize) -> bool,
) -> anyhow::Result<Vec<[f32; 3]>> {
    let mut out = Vec::with_capacity(indices.len());
    forward_rows(network, indices, example, use_token, |o| {
        for row in o.sentiment_logits.to_vec2::<f32>()? {
            out.push(
                <[f32; 3]>::try_from(row.as_slice())
                    .map_err(|_| anyhow::anyhow!("the sentiment head has not 3 outputs"))?,
            );
        }
        Ok(())
    })?;
    Ok(out)
}

/// Runs the network over the examples at `indices` in chunks of 1024, handing each
/// chunk's outputs (rows in `indices` order) to `take`.
pub(super) fn forward_rows<'e>(
    network: &FusionNetwork,
    indices: &[usize],
    example: impl Fn(usize) -> Example<'e>,
    use_token: impl Fn(usize) -> bool,
    mut take: impl FnMut(NetworkOutput) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for chunk in indices.chunks(1024) {
        let mut builder = BatchBuilder::new(*network.dims());
        for &i in chunk {
            builder.push(&example(i), &use_token);
        }
        take(network.forward(&builder.build()?)?)?;
    }
    Ok(())
}

pub(super) struct Session<'a> {
    pub network: &'a FusionNetwork,
    pub varmap: &'a VarMap,
    pub features: &'a Features,
    pub labels: &'a [usize],
    pub split: &'a Split,
    pub class_weights: &'a [f32],
    /// Per example, log p(label | topic); zeros without debiasing.
    pub bias: &'a [[f32; 3]],
    pub config: &'a TrainConfig,
}

pub(super) struct Fit {
    pub epochs: usize,
    pub best_epoch: usize,
    pub best_f1: f64,
}

impl Session<'_> {
    /// Trains, keeping the weights of the epoch with the best validation macro-F1.
    pub fn fit(&self, rng: &mut StdRng, progress: &mut dyn FnMut(&str)) -> anyhow::Result<Fit> {
        let config = self.config;
        let vars = self.varmap.all_vars();
        let mut optimizer = AdamW::new(
            vars.clone(),
            ParamsAdamW {
                lr: config.learning_rate,
                weight_decay: config.weight_decay,
                ..ParamsAdamW::default()
            },
        )?;
        let validation_labels: Vec<usize> = self
            .split
            .validation
            .iter()
            .map(|&i| self.labels[i])
            .collect();
        let mut best = Fit {
            epochs: 0,
            best_epoch: 0,
            best_f1: -1.0,
        };
        let mut best_weights: Vec<Tensor> = Vec::new();
        let mut order = self.split.train.clone();
        for epoch in 1..=config.epochs {
            let started = Instant::now();
            order.shuffle(rng);
            let mut loss_sum = 0.0;
            for batch in order.chunks(config.batch_size) {
                let loss = self.loss(batch, rng)?;
                optimizer.backward_step(&loss)?;
                loss_sum += f64::from(loss.to_scalar::<f32>()?) * batch.len() as f64;
            }
            let predicted = predict(
                self.network,
                self.features,
                &self.split.validation,
                self.shown(true),
            )?;
            let f1 = Confusion::from_labels(3, &validation_labels, &predicted).macro_f1();
            best.epochs = epoch;
            let improved = f1 > best.best_f1;
            if improved {
                best.best_f1 = f1;
                best.best_epoch = epoch;
                best_weights = vars
                    .iter()
                    .map(|v| v.as_tensor().copy())
                    .collect::<Result<_, _>>()?;
            }
            progress(&format!(
                "epoch {epoch} ({:.1} s): loss {:.4}, validation macro-F1 {f1:.4}{}",
                started.elapsed().as_secs_f64(),
                loss_sum / order.len() as f64,
                if improved { " (best)" } else { "" }
            ));
            if epoch - best.best_epoch >= config.patience {
                progress(&format!(
                    "early stop: no better validation macro-F1 for {} epochs",
                    config.patience
                ));
                break;
            }
        }
        for (var, weights) in vars.iter().zip(&best_weights) {
            var.set(weights)?;
        }
        Ok(best)
    }

    fn shown(&self, text: bool) -> Shown {
        Shown {
            text,
            situations: self.config.use_situations,
        }
    }

    /// Class-weighted cross-entropy of one mini-batch, with text-token and hidden dropout.
    fn loss(&self, batch: &[usize], rng: &mut StdRng) -> anyhow::Result<Tensor> {
        let config = self.config;
        let mut builder = BatchBuilder::new(config.dims);
        for &i in batch {
            let shown = self.shown(rng.random::<f64>() >= config.text_dropout);
            builder.push(&self.features.example(i), |slot| {
                shown.slot(slot, &config.dims)
            });
        }
        let mask = dropout_mask(rng, batch.len(), config.dims.d_model, config.dropout)?;
        let out = self
            .network
            .forward_with_dropout(&builder.build()?, Some(&mask))?;
        let targets: Vec<u32> = batch.iter().map(|&i| self.labels[i] as u32).collect();
        let weights: Vec<f32> = batch
            .iter()
            .map(|&i| self.class_weights[self.labels[i]])
            .collect();
        let total: f32 = weights.iter().sum();
        let targets = Tensor::from_vec(targets, (batch.len(), 1), &Device::Cpu)?;
        let weights = Tensor::from_vec(weights, batch.len(), &Device::Cpu)?;
        let bias: Vec<f32> = batch.iter().flat_map(|&i| self.bias[i]).collect();
        let bias = Tensor::from_vec(bias, (batch.len(), 3), &Device::Cpu)?;
        let logits = (out.sentiment_logits + bias)?;
        let log_p = candle_nn::ops::log_softmax(&logits, D::Minus1)?
            .gather(&targets, 1)?
            .squeeze(1)?;
        let loss = ((log_p * weights)?.sum_all()? * (-1.0 / f64::from(total)))?;
        Ok(loss.to_dtype(DType::F32)?)
    }
}

/// Inverted dropout on `rows` hidden vectors of `width`: each value kept, scaled by
/// 1 / (1 - `dropout`), with probability 1 - `dropout`; one draw per value, row by row.
pub(super) fn dropout_mask(
    rng: &mut StdRng,
    rows: usize,
    width: usize,
    dropout: f64,
) -> anyhow::Result<Tensor> {
    let keep = 1.0 - dropout;
    let mask: Vec<f32> = (0..rows * width)
        .map(|_| {
            if rng.random::<f64>() < keep {
                (1.0 / keep) as f32
            } else {
                0.0
            }
        })
        .collect();
    Ok(Tensor::from_vec(mask, (rows, width), &Device::Cpu)?)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::class_weights;
    use empathy_corpus::stratified_split;
    use empathy_model::network::init_network;

    /// Three separable classes: the text token carries the label, the lexicon noise.
    fn synthetic(seed: u64) -> (Features, Vec<usize>) {
        let dims = Dims {
            text: 12,
            lexicon: 4,
            speech: 2,
            image: 2,
            situation: 12,
            max_situations: 1,
            max_context: 0,
            d_model: 16,
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let labels: Vec<usize> = (0..900).map(|i| [0, 0, 1, 2][i % 4]).collect();
        let mut text = Vec::new();
        let mut lexicon = Vec::new();
        for &label in &labels {
            text.extend((0..dims.text).map(|j| {
                let signal = if j % 3 == label { 1.0 } else { 0.0 };
                signal + rng.random_range(-0.6f32..0.6)
            }));
            lexicon.extend((0..dims.lexicon).map(|_| rng.random_range(-1.0f32..1.0)));
        }
        let vader = vec![0.0; labels.len()];
        (
            Features {
                text,
                lexicon,
                vader,
                situations: Vec::new(),
                context: Vec::new(),
                dims,
            },
            labels,
        )
    }

    fn train(seed: u64) -> anyhow::Result<(f64, Vec<usize>)> {
        let (features, labels) = synthetic(9);
        let split = stratified_split(&labels, seed, 0.1);
        let config = TrainConfig {
            seed,
            epochs: 25,
            dims: features.dims,
            ..TrainConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let (varmap, network) = init_network(features.dims, &mut rng)?;
        let weights = class_weights(&labels, &split.train, true);
        let session = Session {
            network: &network,
            varmap: &varmap,
            features: &features,
            labels: &labels,
            split: &split,
            class_weights: &weights,
            bias: &vec![[0.0; 3]; labels.len()],
            config: &config,
        };
        let fit = session.fit(&mut rng, &mut |_| {})?;
        let shown = Shown {
            text: true,
            situations: false,
        };
        let test = predict(&network, &features, &split.test, shown)?;
        let truth: Vec<usize> = split.test.iter().map(|&i| labels[i]).collect();
        assert!(fit.best_epoch >= 1 && fit.best_epoch <= fit.epochs);
        Ok((Confusion::from_labels(3, &truth, &test).macro_f1(), test))
    }

    #[test]
    fn learns_a_separable_problem_deterministically() -> anyhow::Result<()> {
        let (f1, predictions) = train(5)?;
        assert!(f1 > 0.9, "test macro-F1 {f1}");
        assert_eq!(train(5)?.1, predictions, "same seed, same model");
        Ok(())
    }
}
