//! A fine-tune's training: the epochs' rows, the two optimizers, the loop and the
//! loss.

use candle_core::{D, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::super::fit::dropout_mask;
use super::evaluate::Judged;
use super::prepare::{Data, Networks};
use super::{Cancelled, FinetuneConfig, Rows, Run, Tokens};
use empathy_model::batch::BatchBuilder;
use empathy_model::network::FusionNetwork;
use empathy_model::prior_logit;

/// Each epoch's rows: the replay sample plus the feedback repeated `copies` times.
pub(super) struct Epochs {
    pub rows: Vec<usize>,
    pub copies: usize,
}

impl Run<'_> {
    /// Each epoch: the replay sample, the feedback (each read correction with its
    /// twin as the reader moved it) repeated to its share, and the tenant's traffic
    /// repeated to weigh as much as the feedback.
    pub(super) fn epoch_rows(&self, data: &Data) -> Epochs {
        let replay = &data.replay;
        let fb_train: Vec<usize> = data
            .fb_train
            .iter()
            .flat_map(|row| std::iter::once(*row).chain(data.read_twins.get(row).copied()))
            .collect();
        let share = self.config.feedback_share.clamp(0.0, 0.9);
        let copies = if fb_train.is_empty() {
            0
        } else {
            ((share * replay.len() as f64 / ((1.0 - share) * fb_train.len() as f64)).round()
                as usize)
                .max(1)
        };
        let mut rows: Vec<usize> = replay.clone();
        for _ in 0..copies {
            rows.extend(&fb_train);
        }
        // The traffic as often as the corrections, in all (see `traffic_weight`).
        let traffic_copies = if data.traffic.is_empty() {
            0
        } else {
            let shown = self.config.traffic_weight * (copies * fb_train.len()) as f64;
            (shown / data.traffic.len() as f64).round() as usize
        };
        for _ in 0..traffic_copies {
            rows.extend(&data.traffic);
        }
        Epochs { rows, copies }
    }

    /// Each fold in turn is held out: a copy of the serving version is trained, as the
    /// final one will be, on the other folds' corrections and judged on this fold's.
    /// So every correction is judged once by a candidate that never saw it, which
    /// gives the gate as many judgements as there are corrections (a single hold-out
    /// of a quarter gave it too few to be sure of anything).
    pub(super) fn cross_validate(
        &mut self,
        weights: &[u8],
        data: &mut Data,
        progress: &mut dyn FnMut(f32, &str),
        cancelled: &dyn Fn() -> bool,
    ) -> anyhow::Result<Vec<Judged>> {
        let folds = data.fold.iter().max().map_or(0, |f| f + 1);
        let mut judged = Vec::with_capacity(data.feedback.len());
        for f in 0..folds {
            let in_fold = |held: bool| -> Vec<usize> {
                let rows = data.feedback.iter().zip(&data.fold);
                rows.filter(|(_, fold)| (**fold == f) == held)
                    .map(|(row, _)| *row)
                    .collect()
            };
            let held = in_fold(true);
            data.fb_train = in_fold(false);
            let networks = self.networks(weights)?;
            let mut epochs = self.epoch_rows(data);
            let span = |f: usize| 0.1 + 0.6 * f as f32 / folds as f32;
            let quiet = &mut |_: f32, _: &str| {};
            self.train(
                &networks,
                data,
                &mut epochs,
                (span(f), span(f + 1)),
                quiet,
                cancelled,
            )?;
            let fold = self.judge(&networks, data, &held)?;
            progress(
                span(f + 1),
                &format!(
                    "fold {}/{folds}: {} of {} held-out corrections right (the serving \
                     version: {})",
                    f + 1,
                    fold.iter().filter(|j| j.new).count(),
                    fold.len(),
                    fold.iter().filter(|j| j.old).count()
                ),
            );
            judged.extend(fold);
        }
        data.fb_train = data.feedback.clone();
        Ok(judged)
    }

    /// Trains the copy: per epoch a seeded shuffle, then mini-batches.
    pub(super) fn train(
        &mut self,
        networks: &Networks,
        data: &Data,
        epochs: &mut Epochs,
        (from, to): (f32, f32),
        progress: &mut dyn FnMut(f32, &str),
        cancelled: &dyn Fn() -> bool,
    ) -> anyhow::Result<()> {
        let config = self.config;
        let (mut optimizer, mut emotion_optimizer) = optimizers(&networks.varmap, config)?;
        for epoch in 1..=config.epochs {
            epochs.rows.shuffle(&mut self.rng);
            let mut loss_sum = 0.0;
            for batch in epochs.rows.chunks(config.batch_size) {
                if cancelled() {
                    anyhow::bail!(Cancelled);
                }
                let loss = loss(
                    &networks.network,
                    &data.rows,
                    batch,
                    self.tokens,
                    self.train_emotions,
                    config.dropout,
                    &mut self.rng,
                )?;
                let grads = loss.backward()?;
                optimizer.step(&grads)?;
                if self.train_emotions {
                    emotion_optimizer.step(&grads)?;
                }
                loss_sum += f64::from(loss.to_scalar::<f32>()?) * batch.len() as f64;
            }
            let fraction = from + (to - from) * epoch as f32 / config.epochs.max(1) as f32;
            progress(
                fraction,
                &format!(
                    "epoch {epoch}/{}: loss {:.4} over {} examples ({} feedback copies)",
                    config.epochs,
                    loss_sum / epochs.rows.len().max(1) as f64,
                    epochs.rows.len(),
                    epochs.copies
                ),
            );
        }
        Ok(())
    }
}

/// The body's optimizer and the emotion head's (the context tokens stay frozen). The emotion head is a logistic
/// regression on a representation it does not shape (see `network`), so it takes its
/// own, larger steps.
fn optimizers(varmap: &VarMap, config: &FinetuneConfig) -> anyhow::Result<(AdamW, AdamW)> {
    let (head, body): (Vec<_>, Vec<_>) = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("model variables lock poisoned"))?
        .iter()
        // Corrections come without their previous turns: how the parent reads context
        // is kept as it is, not decayed by steps that never show it a turn.
        .filter(|(name, _)| !name.starts_with("context."))
        .map(|(name, var)| (name.starts_with("head.emotion."), var.clone()))
        .partition(|(is_head, _)| *is_head);
    let adamw = |vars: Vec<(bool, candle_core::Var)>, lr: f64| {
        AdamW::new(
            vars.into_iter().map(|(_, v)| v).collect(),
            ParamsAdamW {
                lr,
                weight_decay: config.weight_decay,
                ..ParamsAdamW::default()
            },
        )
    };
    let optimizer = adamw(body, config.learning_rate)?;
    let emotion_optimizer = adamw(head, config.emotion_learning_rate)?;
    Ok((optimizer, emotion_optimizer))
}

/// Cross-entropy of the corrected (or base) sentiment where there is one, plus, when
/// emotions are trained, binary cross-entropy of each emotion against its target.
fn loss(
    network: &FusionNetwork,
    rows: &Rows,
    batch: &[usize],
    tokens: Tokens,
    train_emotions: bool,
    dropout: f64,
    rng: &mut StdRng,
) -> anyhow::Result<Tensor> {
    let dims = *network.dims();
    let mut builder = BatchBuilder::new(dims);
    for &i in batch {
        builder.push(&rows.example(i), |slot| tokens.shows(slot));
    }
    let hidden_mask = dropout_mask(rng, batch.len(), dims.d_model, dropout)?;
    let out = network.forward_with_dropout(&builder.build()?, Some(&hidden_mask))?;
    let n = batch.len();
    let targets: Vec<u32> = batch
        .iter()
        .map(|&i| rows.sentiment[i].unwrap_or(0) as u32)
        .collect();
    let targets = Tensor::from_vec(targets, (n, 1), &Device::Cpu)?;
    let labelled: Vec<f32> = batch
        .iter()
        .map(|&i| f32::from(u8::from(rows.sentiment[i].is_some())))
        .collect();
    let count = labelled.iter().sum::<f32>().max(1.0);
    let labelled = Tensor::from_vec(labelled, n, &Device::Cpu)?;
    let bias: Vec<f32> = batch.iter().flat_map(|&i| rows.bias[i]).collect();
    let bias = Tensor::from_vec(bias, (n, 3), &Device::Cpu)?;
    let log_p = candle_nn::ops::log_softmax(&(out.sentiment_logits + bias)?, D::Minus1)?
        .gather(&targets, 1)?
        .squeeze(1)?;
    let sentiment = ((log_p * labelled)?.sum_all()? * f64::from(-1.0 / count))?;
    if !train_emotions {
        return Ok(sentiment);
    }
    let t: Vec<f32> = batch
        .iter()
        .flat_map(|&i| rows.emotion_targets[i])
        .collect();
    let t = Tensor::from_vec(t, (n, 7), &Device::Cpu)?;
    let mut prior = Vec::with_capacity(n * 7);
    for &i in batch {
        prior.extend(rows.lexicon_emotions(i)?.map(prior_logit));
    }
    let prior = Tensor::from_vec(prior, (n, 7), &Device::Cpu)?;
    // Binary cross-entropy on logits, in the stable form max(x, 0) - x t + ln(1 + e^-|x|).
    let x = &(&out.emotion_logits + prior)?;
    let bce = ((x.relu()? - (x * &t)?)? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?.mean_all()?;
    Ok((sentiment + bce)?)
}
