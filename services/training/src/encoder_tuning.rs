//! Fine-tuning the text encoder itself (MiniLM) on the sentiment task, on the CPU.
//! The frozen encoder reads words more than meaning: negation and contrast barely move
//! its embedding. Tuning the top layers lets the sentence vector carry polarity, while
//! two things keep it a general sentence encoder: distillation towards the frozen
//! encoder's own embedding of the same text (cached already), and layer-wise decay of
//! the learning rate (the lower a layer, the less it moves). A temporary linear head
//! gives the gradient; the fusion network is trained afterwards on the new embeddings,
//! as on the old ones. The result is a new sentence-transformers directory, a text
//! plugin model of its own (its own checksum); the base model is never touched.

mod batches;
mod bert;
mod corpus;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, ensure};
use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};

use batches::Tokens;
use bert::TrainableBert;
pub use corpus::{Keep, tempdir_in, tune_on_corpus, tuned_root};

#[derive(Debug, Clone, serde::Serialize)]
pub struct TuningConfig {
    pub seed: u64,
    /// Encoder layers trained, counted from the top.
    pub trainable_layers: usize,
    pub epochs: usize,
    pub batch_size: usize,
    /// Learning rate of the top layer; each layer below gets `layer_decay` times the
    /// one above.
    pub learning_rate: f64,
    pub layer_decay: f64,
    /// Learning rate of the temporary sentiment head.
    pub head_learning_rate: f64,
    /// Weight of the squared distance to the frozen encoder's embedding.
    pub distill_weight: f64,
    /// Most training examples per epoch (a seeded sample), None = all.
    pub max_examples: Option<usize>,
}

impl Default for TuningConfig {
    fn default() -> Self {
        TuningConfig {
            seed: 42,
            trainable_layers: 2,
            epochs: 1,
            batch_size: 32,
            learning_rate: 5e-5,
            layer_decay: 0.8,
            head_learning_rate: 1e-3,
            distill_weight: 1.0,
            max_examples: None,
        }
    }
}

/// What the tuning learns from, `train` indexing into the rest.
pub struct TuningData<'a> {
    pub texts: &'a [String],
    pub labels: &'a [usize],
    /// The frozen encoder's unit embeddings, row-major, one row per text.
    pub frozen: &'a [f32],
    /// Per text, the logit bias (topic prior) added in training, as for the head.
    pub bias: &'a [[f32; 3]],
    pub train: &'a [usize],
}

#[derive(Debug, Clone)]
pub struct TunedEncoder {
    /// The new model directory, loadable by the text plugin.
    pub dir: PathBuf,
    /// First 12 hex digits of its model.safetensors' sha256 (the plugin's version).
    pub version: String,
    pub seconds: f64,
}

/// Tunes the encoder in `base_dir` and writes it under `out_root/<version>`.
pub fn tune_encoder(
    base_dir: &Path,
    out_root: &Path,
    data: &TuningData,
    config: &TuningConfig,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<TunedEncoder> {
    let started = Instant::now();
    let bert = TrainableBert::load(base_dir, config.trainable_layers)?;
    let tokens = Tokens::new(base_dir, data.texts)?;
    let width = data.frozen.len() / data.texts.len().max(1);
    ensure!(
        width * data.texts.len() == data.frozen.len() && width > 0,
        "frozen embeddings do not match the texts"
    );
    let mut rng = StdRng::seed_from_u64(config.seed);
    let head = Head::new(width, &mut rng)?;
    let mut optimizers = optimizers(&bert, &head, config)?;
    let mut sample = data.train.to_vec();
    for epoch in 1..=config.epochs {
        if let Some(max) = config.max_examples {
            use rand::seq::SliceRandom;
            sample = data.train.to_vec();
            sample.shuffle(&mut rng);
            sample.truncate(max);
        }
        let batches = tokens.batches(&sample, config.batch_size, &mut rng);
        let (mut ce_sum, mut distill_sum) = (0.0, 0.0);
        let epoch_started = Instant::now();
        for (step, batch) in batches.iter().enumerate() {
            let (ce, distill) = step_loss(&bert, &head, &tokens, data, batch, width)?;
            let loss = (&ce + (&distill * config.distill_weight)?)?;
            let grads = loss.backward()?;
            for opt in &mut optimizers {
                opt.step(&grads)?;
            }
            ce_sum += f64::from(ce.to_scalar::<f32>()?);
            distill_sum += f64::from(distill.to_scalar::<f32>()?);
            if (step + 1) % 50 == 0 || step + 1 == batches.len() {
                let done = step + 1;
                progress(&format!(
                    "encoder epoch {epoch}: step {done}/{}, sentiment loss {:.4}, \
                     distance to the frozen encoder {:.4}, {:.1} texts/s",
                    batches.len(),
                    ce_sum / done as f64,
                    distill_sum / done as f64,
                    (done * config.batch_size) as f64 / epoch_started.elapsed().as_secs_f64()
                ));
            }
        }
    }
    let tuned = write_model(base_dir, out_root, &bert, config)?;
    progress(&format!(
        "tuned encoder {} ({:.0} s)",
        tuned.display(),
        started.elapsed().as_secs_f64()
    ));
    Ok(TunedEncoder {
        version: version_of(&tuned)?,
        dir: tuned,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The temporary sentiment head: logits = W (scale * e) + b.
struct Head {
    weight: Var,
    bias: Var,
}

/// Unit embeddings are small; this brings logits to a useful range from the start.
const HEAD_SCALE: f64 = 10.0;

impl Head {
    fn new(width: usize, rng: &mut StdRng) -> anyhow::Result<Self> {
        use rand::Rng;
        let bound = (1.0 / width as f64).sqrt();
        let w: Vec<f32> = (0..3 * width)
            .map(|_| rng.random_range(-bound..bound) as f32)
            .collect();
        Ok(Head {
            weight: Var::from_tensor(&Tensor::from_vec(w, (3, width), &Device::Cpu)?)?,
            bias: Var::zeros(3, DType::F32, &Device::Cpu)?,
        })
    }

    fn logits(&self, e: &Tensor) -> candle_core::Result<Tensor> {
        (e * HEAD_SCALE)?
            .matmul(&self.weight.as_tensor().t()?)?
            .broadcast_add(self.bias.as_tensor())
    }
}

/// One AdamW per layer (layer-wise decay) and one for the head.
fn optimizers(
    bert: &TrainableBert,
    head: &Head,
    config: &TuningConfig,
) -> anyhow::Result<Vec<AdamW>> {
    let top = bert.layers() - 1;
    let mut out = Vec::new();
    for layer in 0..bert.layers() {
        let vars: Vec<Var> = bert
            .vars()
            .filter(|(l, _)| *l == layer)
            .map(|(_, v)| v.clone())
            .collect();
        if vars.is_empty() {
            continue;
        }
        let lr = config.learning_rate * config.layer_decay.powi((top - layer) as i32);
        out.push(AdamW::new(vars, adamw(lr))?);
    }
    let head_vars = vec![head.weight.clone(), head.bias.clone()];
    out.push(AdamW::new(head_vars, adamw(config.head_learning_rate))?);
    Ok(out)
}

fn adamw(lr: f64) -> ParamsAdamW {
    ParamsAdamW {
        lr,
        weight_decay: 0.01,
        ..ParamsAdamW::default()
    }
}

/// Sentiment cross-entropy (with the topic prior added to the logits, as the head is
/// trained) and the mean squared distance to the frozen embeddings, on one batch.
fn step_loss(
    bert: &TrainableBert,
    head: &Head,
    tokens: &Tokens,
    data: &TuningData,
    batch: &[usize],
    width: usize,
) -> anyhow::Result<(Tensor, Tensor)> {
    let (ids, mask) = tokens.tensors(batch)?;
    let e = bert.embed(&ids, &mask)?;
    let n = batch.len();
    let bias: Vec<f32> = batch.iter().flat_map(|&i| data.bias[i]).collect();
    let bias = Tensor::from_vec(bias, (n, 3), &Device::Cpu)?;
    let labels: Vec<u32> = batch.iter().map(|&i| data.labels[i] as u32).collect();
    let labels = Tensor::from_vec(labels, n, &Device::Cpu)?;
    let logits = (head.logits(&e)? + bias)?;
    let ce = candle_nn::loss::cross_entropy(&logits, &labels)?;
    let frozen: Vec<f32> = batch
        .iter()
        .flat_map(|&i| data.frozen[i * width..(i + 1) * width].iter().copied())
        .collect();
    let frozen = Tensor::from_vec(frozen, (n, width), &Device::Cpu)?;
    let distill = (e - frozen)?.sqr()?.sum(D::Minus1)?.mean_all()?;
    Ok((ce, distill))
}

/// A copy of `base_dir` with the tuned weights and a tuning.json, named by version.
fn write_model(
    base_dir: &Path,
    out_root: &Path,
    bert: &TrainableBert,
    config: &TuningConfig,
) -> anyhow::Result<PathBuf> {
    let staging = out_root.join(".staging");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    copy_dir(base_dir, &staging)?;
    bert.save(&staging.join("model.safetensors"))?;
    let record = serde_json::json!({
        "base": base_dir.display().to_string(),
        "base_version": version_of(base_dir)?,
        "tuning": config,
    });
    std::fs::write(
        staging.join("tuning.json"),
        serde_json::to_vec_pretty(&record)?,
    )?;
    let dir = out_root.join(version_of(&staging)?);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::rename(&staging, &dir)
        .with_context(|| format!("moving the tuned encoder to {}", dir.display()))?;
    Ok(dir)
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if entry.file_name() != "model.safetensors" {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The text plugin's version of a model directory: sha256 of model.safetensors, 12 hex.
pub fn version_of(model_dir: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(model_dir.join("model.safetensors"))
        .with_context(|| format!("reading {}/model.safetensors", model_dir.display()))?;
    Ok(hex::encode(&Sha256::digest(&bytes)[..6]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use empathy_model::test_support::{TempDir, assets_dir};

    fn base_dir() -> PathBuf {
        assets_dir().join("text/all-MiniLM-L6-v2")
    }

    #[derive(serde::Deserialize)]
    struct Reference {
        items: Vec<Item>,
    }

    #[derive(serde::Deserialize)]
    struct Item {
        text: String,
        tokens: usize,
        embedding: Vec<f32>,
    }

    /// The training forward pass is the model sentence-transformers runs: same
    /// embeddings as its reference file (texts that fit in the training length).
    #[test]
    fn trainable_bert_matches_sentence_transformers() -> anyhow::Result<()> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../plugins/text/reference/reference_embeddings.json");
        let reference: Reference = serde_json::from_slice(&std::fs::read(path)?)?;
        let items: Vec<&Item> = reference.items.iter().filter(|i| i.tokens <= 128).collect();
        assert!(items.len() >= 20);
        let bert = TrainableBert::load(&base_dir(), 2)?;
        let texts: Vec<String> = items.iter().map(|i| i.text.clone()).collect();
        let tokens = Tokens::new(&base_dir(), &texts)?;
        for (k, item) in items.iter().enumerate() {
            let (ids, mask) = tokens.tensors(&[k])?;
            let ours = bert.embed(&ids, &mask)?.flatten_all()?.to_vec1::<f32>()?;
            let cosine: f32 = ours.iter().zip(&item.embedding).map(|(a, b)| a * b).sum();
            assert!(cosine > 0.9999, "{:?}: cosine {cosine}", item.text);
        }
        Ok(())
    }

    #[test]
    fn tuning_learns_the_labels_and_writes_a_new_model_beside_the_base() -> anyhow::Result<()> {
        let dir = TempDir::new("tuning");
        let base_version = version_of(&base_dir())?;
        let mut texts = Vec::new();
        let mut labels = Vec::new();
        for (i, thing) in [
            "food", "room", "staff", "flight", "movie", "phone", "class", "car",
        ]
        .iter()
        .enumerate()
        {
            texts.push(format!("The {thing} was wonderful"));
            labels.push(2);
            texts.push(format!("The {thing} was dreadful"));
            labels.push(0);
            texts.push(format!("The {thing} is on the list number {i}"));
            labels.push(1);
        }
        let bert = TrainableBert::load(&base_dir(), 1)?;
        let tokens = Tokens::new(&base_dir(), &texts)?;
        let all: Vec<usize> = (0..texts.len()).collect();
        let (ids, mask) = tokens.tensors(&all)?;
        let frozen = bert.embed(&ids, &mask)?.flatten_all()?.to_vec1::<f32>()?;
        let data = TuningData {
            texts: &texts,
            labels: &labels,
            frozen: &frozen,
            bias: &vec![[0.0; 3]; texts.len()],
            train: &all,
        };
        let config = TuningConfig {
            trainable_layers: 1,
            epochs: 6,
            batch_size: 8,
            learning_rate: 1e-4,
            ..TuningConfig::default()
        };
        let mut losses = Vec::new();
        let tuned = tune_encoder(&base_dir(), dir.path(), &data, &config, &mut |m| {
            losses.push(m.to_string())
        })?;
        // The sentiment loss of the last epoch is below the first's.
        let loss = |line: &String| -> Option<f64> {
            line.split("sentiment loss ")
                .nth(1)?
                .split(',')
                .next()?
                .parse()
                .ok()
        };
        let per_epoch: Vec<f64> = losses.iter().filter_map(loss).collect();
        assert!(per_epoch.len() >= 6, "{losses:?}");
        assert!(
            per_epoch[per_epoch.len() - 1] < per_epoch[0],
            "{per_epoch:?}"
        );
        assert_ne!(tuned.version, base_version);
        assert_eq!(tuned.dir, dir.path().join(&tuned.version));
        for file in [
            "config.json",
            "tokenizer.json",
            "tuning.json",
            "model.safetensors",
        ] {
            assert!(tuned.dir.join(file).is_file(), "{file} missing");
        }
        assert_eq!(version_of(&base_dir())?, base_version);
        Ok(())
    }
}
