//! `read-feelings`: how often the emotion the generator reads off its situations
//! (feeling.rs) is the emotion a reader would infer, on a JSONL file of
//! `{"text", "emotion"}` (e.g. eval/implicit-dev.jsonl): read off each imagined
//! situation (averaged over them), and, as the baseline, read off the utterance alone
//! after a situation that says nothing.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Device;
use empathy_proto::EMOTION_LABELS;

use super::{TrainOptions, generate_cached};
use crate::{
    feeling::{FeelingReader, top},
    llama::WeightFormat,
    loader,
    pmi::utterance_context,
};

#[derive(serde::Deserialize)]
struct Line {
    text: String,
    emotion: String,
}

pub fn read_feelings(
    assets: &Path,
    device: &Device,
    weights: WeightFormat,
    data: &Path,
    opts: &TrainOptions,
) -> Result<()> {
    let lines = std::fs::read_to_string(data)
        .with_context(|| format!("cannot read {}", data.display()))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Line>(l).context("expected {\"text\", \"emotion\"}"))
        .collect::<Result<Vec<_>>>()?;
    let utterances: Vec<String> = lines.iter().map(|l| l.text.clone()).collect();
    let (gens, _) = generate_cached(assets, device, weights, &utterances, opts)?;
    let generator = loader::load_generator(assets, device, weights)?;
    let (model, tok) = (&generator.model, &generator.tokenizer);
    let reader = FeelingReader::new(model, tok)?;
    let (mut alone, mut imagined, mut n) = (0, 0, 0);
    for (line, g) in lines.iter().zip(&gens) {
        anyhow::ensure!(
            EMOTION_LABELS.contains(&line.emotion.as_str()),
            "unknown emotion {:?}",
            line.emotion
        );
        let context = utterance_context(model, tok, &line.text)?;
        let base = reader.read(model, tok, &context, "Something happened.")?;
        let mut mean = [0.0; 7];
        for s in &g.situations {
            for (m, p) in mean.iter_mut().zip(reader.read(model, tok, &context, s)?) {
                *m += p / g.situations.len() as f32;
            }
        }
        let got = if g.situations.is_empty() {
            "-"
        } else {
            top(&mean)
        };
        println!(
            "{:9} alone {:9} imagined {:9}  {}",
            line.emotion,
            top(&base),
            got,
            line.text
        );
        for s in &g.situations {
            println!("            {s}");
        }
        n += 1;
        alone += usize::from(top(&base) == line.emotion);
        imagined += usize::from(got == line.emotion);
    }
    println!(
        "top-emotion accuracy on {n}: read off the utterance alone {:.3}, off its situations {:.3}",
        alone as f64 / n as f64,
        imagined as f64 / n as f64
    );
    Ok(())
}
