//! MiniLM (BERT) for training: the same weights and arithmetic as the text plugin's
//! inference BERT, written with differentiable tensor ops only (candle's fused layer
//! norm and softmax have no backward pass). The top `trainable` layers are `Var`s;
//! the rest are plain tensors, so their forward pass records no graph.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, ensure};
use candle_core::{D, DType, Device, Tensor, Var};

/// The shape facts we need from config.json.
#[derive(serde::Deserialize)]
pub(crate) struct BertConfig {
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub layer_norm_eps: f64,
}

/// Weights by their safetensors name; `vars` are the ones being trained.
pub(crate) struct TrainableBert {
    weights: HashMap<String, Tensor>,
    vars: Vec<(String, Var)>,
    config: BertConfig,
    first_trainable: usize,
}

impl TrainableBert {
    /// Loads `model_dir`'s weights, making the top `trainable` layers variables.
    pub fn load(model_dir: &Path, trainable: usize) -> anyhow::Result<Self> {
        let config: BertConfig = serde_json::from_slice(
            &std::fs::read(model_dir.join("config.json")).context("reading config.json")?,
        )?;
        ensure!(
            (1..=config.num_hidden_layers).contains(&trainable),
            "trainable layers must be 1..={}, not {trainable}",
            config.num_hidden_layers
        );
        let first_trainable = config.num_hidden_layers - trainable;
        let mut weights =
            candle_core::safetensors::load(model_dir.join("model.safetensors"), &Device::Cpu)
                .context("reading model.safetensors")?;
        let mut vars = Vec::new();
        for (name, tensor) in weights.iter_mut() {
            if layer_of(name).is_some_and(|l| l >= first_trainable) {
                let var = Var::from_tensor(&tensor.to_dtype(DType::F32)?)?;
                *tensor = var.as_tensor().clone();
                vars.push((name.clone(), var));
            }
        }
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self {
            weights,
            vars,
            config,
            first_trainable,
        })
    }

    /// The trained variables with their layer number (for layer-wise learning rates).
    pub fn vars(&self) -> impl Iterator<Item = (usize, &Var)> {
        self.vars
            .iter()
            .filter_map(|(name, var)| layer_of(name).map(|l| (l, var)))
    }

    pub fn layers(&self) -> usize {
        self.config.num_hidden_layers
    }

    /// Every weight under its original name, trained ones at their current values.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        candle_core::safetensors::save(&self.weights, path)?;
        Ok(())
    }

    fn w(&self, name: &str) -> anyhow::Result<&Tensor> {
        self.weights
            .get(name)
            .with_context(|| format!("model.safetensors has no {name}"))
    }

    /// Unit-length mean-pooled sentence embeddings (n, hidden) of `ids` (n, len) with
    /// `mask` (n, len; 1 = token, 0 = padding).
    pub fn embed(&self, ids: &Tensor, mask: &Tensor) -> anyhow::Result<Tensor> {
        let (n, len) = ids.dims2()?;
        let h = self.config.hidden_size;
        let words = self
            .w("embeddings.word_embeddings.weight")?
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((n, len, h))?;
        let positions = self
            .w("embeddings.position_embeddings.weight")?
            .narrow(0, 0, len)?
            .broadcast_add(&self.w("embeddings.token_type_embeddings.weight")?.get(0)?)?;
        let mut x = self.norm(
            &words.broadcast_add(&positions)?,
            "embeddings.LayerNorm",
            false,
        )?;
        let bias = ((mask.ones_like()? - mask)? * -1e4)?.reshape((n, 1, 1, len))?;
        for layer in 0..self.config.num_hidden_layers {
            if layer == self.first_trainable {
                // Below here nothing is trained: no graph to keep.
                x = x.detach();
            }
            x = self.layer(&x, &bias, layer)?;
        }
        let mask = mask.unsqueeze(2)?;
        let summed = x.broadcast_mul(&mask)?.sum(1)?;
        let pooled = summed.broadcast_div(&mask.sum(1)?)?;
        let norm = pooled.sqr()?.sum_keepdim(1)?.sqrt()?;
        Ok(pooled.broadcast_div(&(norm + 1e-12)?)?)
    }

    /// One encoder layer on `x` (n, len, hidden). Frozen layers use candle's fused
    /// softmax and layer norm (faster, but without a backward pass).
    fn layer(&self, x: &Tensor, bias: &Tensor, layer: usize) -> anyhow::Result<Tensor> {
        let trained = layer >= self.first_trainable;
        let (n, len, h) = x.dims3()?;
        let heads = self.config.num_attention_heads;
        let p = format!("encoder.layer.{layer}");
        let split_heads = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((n, len, heads, h / heads))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split_heads(self.linear(x, &format!("{p}.attention.self.query"))?)?;
        let k = split_heads(self.linear(x, &format!("{p}.attention.self.key"))?)?;
        let v = split_heads(self.linear(x, &format!("{p}.attention.self.value"))?)?;
        let scores = (q.matmul(&k.t()?)? / ((h / heads) as f64).sqrt())?.broadcast_add(bias)?;
        let probs = if trained {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((n, len, h))?;
        let attended = self.linear(&context, &format!("{p}.attention.output.dense"))?;
        let x = self.norm(
            &(attended + x)?,
            &format!("{p}.attention.output.LayerNorm"),
            trained,
        )?;
        let up = self
            .linear(&x, &format!("{p}.intermediate.dense"))?
            .gelu_erf()?;
        let down = self.linear(&up, &format!("{p}.output.dense"))?;
        self.norm(&(down + x)?, &format!("{p}.output.LayerNorm"), trained)
    }

    fn linear(&self, x: &Tensor, prefix: &str) -> anyhow::Result<Tensor> {
        let w = self.w(&format!("{prefix}.weight"))?;
        let b = self.w(&format!("{prefix}.bias"))?;
        Ok(x.broadcast_matmul(&w.t()?)?.broadcast_add(b)?)
    }

    /// Layer norm over the last dimension; from plain ops where it needs a gradient.
    fn norm(&self, x: &Tensor, prefix: &str, trained: bool) -> anyhow::Result<Tensor> {
        let (weight, bias) = (
            self.w(&format!("{prefix}.weight"))?,
            self.w(&format!("{prefix}.bias"))?,
        );
        if !trained {
            let eps = self.config.layer_norm_eps as f32;
            return Ok(candle_nn::ops::layer_norm(
                &x.contiguous()?,
                weight,
                bias,
                eps,
            )?);
        }
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.config.layer_norm_eps)?.sqrt()?)?;
        Ok(normed.broadcast_mul(weight)?.broadcast_add(bias)?)
    }
}

/// The encoder layer a weight belongs to ("encoder.layer.3.…" -> 3).
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("encoder.layer.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}
