//! The generator against candle's own quantized llama, and the helpers other tests use.

use super::*;
use candle_transformers::models::quantized_llama::ModelWeights;
use empathy_bpe::GgufTokenizer;

fn path() -> std::path::PathBuf {
    let assets = std::env::var_os("EMPATHY_ASSETS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets")
        });
    crate::loader::gguf_path(&assets)
}

/// The f32 weights give (nearly) the same logits as the GGUF blocks.
#[test]
fn f32_weights_match_gguf_blocks() {
    let (f32_model, tok) = model(WeightFormat::F32);
    let (gguf_model, _, _) = load();
    let prompt = tok.chat_prompt("You are brief.", "Name a colour.").unwrap();
    let a = f32_model
        .prefill(&prompt, &mut f32_model.new_cache(64))
        .unwrap();
    let b = gguf_model
        .prefill(&prompt, &mut gguf_model.new_cache(64))
        .unwrap();
    // The GGUF path quantizes activations to 8 bits; f32 does not.
    assert_eq!(argmax(&a).unwrap(), argmax(&b).unwrap());
    let scale = max_abs(&b);
    assert!(
        max_abs_diff(&a, &b) < 0.1 * scale,
        "f32 and gguf logits diverge"
    );
}

fn load() -> (Model, ModelWeights, GgufTokenizer) {
    let mut f = std::fs::File::open(path()).expect("run `empathy assets fetch`");
    let ct = gguf_file::Content::read(&mut f).unwrap();
    let tok = GgufTokenizer::from_gguf(&ct).unwrap();
    let ours = Model::from_gguf(&ct, &mut f, &Device::Cpu, WeightFormat::Gguf).unwrap();
    let mut f = std::fs::File::open(path()).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    let theirs = ModelWeights::from_gguf(ct, &mut f, &Device::Cpu).unwrap();
    (ours, theirs, tok)
}

/// The generator and its tokenizer, for tests.
pub(crate) fn model(format: WeightFormat) -> (Model, GgufTokenizer) {
    let mut f = std::fs::File::open(path()).expect("run `empathy assets fetch`");
    let ct = gguf_file::Content::read(&mut f).unwrap();
    let tok = GgufTokenizer::from_gguf(&ct).unwrap();
    let model = Model::from_gguf(&ct, &mut f, &Device::Cpu, format).unwrap();
    (model, tok)
}

pub(crate) fn max_abs(a: &Tensor) -> f32 {
    a.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&(a - b).unwrap())
}

/// Our forward matches candle's quantized_llama, in a batch or alone, and greedy
/// decoding gives the same tokens.
#[test]
fn matches_candle_quantized_llama_alone_and_batched() {
    let (model, mut reference, tok) = load();
    let prompt = tok.chat_prompt("You are brief.", "Name a colour.").unwrap();
    let other = tok
        .chat_prompt("You are brief.", "Count to three.")
        .unwrap();

    let input = Tensor::new(prompt.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let want = reference.forward(&input, 0).unwrap().squeeze(0).unwrap();
    let mut cache = model.new_cache(128);
    let got = model.prefill(&prompt, &mut cache).unwrap();
    assert!(max_abs_diff(&want, &got) < 1e-3, "prefill differs");

    // Decode 8 greedy tokens alone (ours and candle's) and beside another sequence.
    let mut other_cache = model.new_cache(128);
    let other_logits = model.prefill(&other, &mut other_cache).unwrap();
    let mut alone = model.fork_cache(&cache, 128).unwrap();
    let mut batched = model.fork_cache(&cache, 128).unwrap();
    let mut next = argmax(&got).unwrap();
    let mut next_other = argmax(&other_logits).unwrap();
    for step in 0..8 {
        let input = Tensor::new(&[next], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let want = reference
            .forward(&input, prompt.len() + step)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let one = model.step(&[next], &mut [&mut alone]).unwrap();
        let two = model
            .step(&[next_other, next], &mut [&mut other_cache, &mut batched])
            .unwrap();
        let one = one.i(0).unwrap();
        // The step's own loops sum in another order than candle's ops, and the GGUF path
        // rounds activations to 8 bits, so a last-bit difference can move a logit by a
        // quantum: the same greedy token and logits close to scale.
        let diff = max_abs_diff(&want, &one);
        assert_eq!(argmax(&want).unwrap(), argmax(&one).unwrap(), "step {step}");
        assert!(diff < 0.1 * max_abs(&want), "step {step} differs by {diff}");
        assert_eq!(
            one.to_vec1::<f32>().unwrap(),
            two.i(1).unwrap().to_vec1::<f32>().unwrap(),
            "batching changed the logits at step {step}"
        );
        next_other = argmax(&two.i(0).unwrap()).unwrap();
        next = argmax(&one).unwrap();
    }
}
