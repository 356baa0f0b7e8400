//! The candle encoder against sentence-transformers (PyTorch) on the same weights, for
//! MiniLM (reference/reference_embeddings.json) and MPNet (reference/reference_mpnet.json;
//! see reference/make_reference.py).

mod common;

use std::sync::OnceLock;

use candle_core::Device;
use empathy_plugin_text::{Precision, SentenceEncoder};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    max_seq_length: usize,
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    text: String,
    embedding: Vec<f32>,
}

fn reference() -> Reference {
    reference_in("reference_embeddings.json")
}

fn reference_in(file: &str) -> Reference {
    let path = format!("{}/reference/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).expect("reading reference embeddings");
    serde_json::from_str(&text).expect("parsing reference embeddings")
}

fn load(model: &str, precision: Precision) -> SentenceEncoder {
    SentenceEncoder::load(&common::model_dir_of(model), &Device::Cpu, precision)
        .expect("loading the encoder")
}

const MINILM: &str = "all-MiniLM-L6-v2";
const MPNET: &str = "all-mpnet-base-v2";

/// f32 throughout, on every CPU.
fn exact() -> &'static SentenceEncoder {
    static ENCODER: OnceLock<SentenceEncoder> = OnceLock::new();
    ENCODER.get_or_init(|| load(MINILM, Precision::F32))
}

/// What the plugin serves by default: bf16 dense layers where the CPU has AMX.
fn encoder() -> &'static SentenceEncoder {
    static ENCODER: OnceLock<SentenceEncoder> = OnceLock::new();
    ENCODER.get_or_init(|| load(MINILM, Precision::Auto))
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
}

#[test]
fn matches_sentence_transformers() {
    matches(&reference(), [exact(), encoder()]);
}

/// MPNet (relative-position attention, positions after the padding id, other weight
/// names) on the same sentences.
#[test]
fn mpnet_matches_sentence_transformers() {
    let exact = load(MPNET, Precision::F32);
    let served = load(MPNET, Precision::Auto);
    assert_eq!(
        exact.family(),
        empathy_plugin_text::Family::MpNet {
            buckets: 32,
            first_position: 2
        }
    );
    assert_eq!(exact.dim(), 768);
    matches(&reference_in("reference_mpnet.json"), [&exact, &served]);
}

/// Every reference embedding within cosine 0.9999 of the f32 encoder's and 0.999 of the
/// served one's.
fn matches(reference: &Reference, [exact, encoder]: [&SentenceEncoder; 2]) {
    assert!(reference.items.len() >= 24);
    assert_eq!(exact.max_tokens(), reference.max_seq_length);
    let texts: Vec<&str> = reference.items.iter().map(|i| i.text.as_str()).collect();
    for (encoder, floor) in [(exact, 0.9999), (encoder, 0.999)] {
        let ours = encoder.encode(&texts).expect("encoding");
        let mut lowest = f32::MAX;
        for (item, vector) in reference.items.iter().zip(&ours) {
            assert_eq!(vector.len(), encoder.dim());
            let c = cosine(vector, &item.embedding);
            assert!(
                c >= floor,
                "cosine {c} for {:?} (bf16: {})",
                item.text,
                encoder.bf16()
            );
            lowest = lowest.min(c);
        }
        eprintln!(
            "lowest cosine to sentence-transformers, bf16 {}: {lowest}",
            encoder.bf16()
        );
    }
}

/// The default encoder against f32 on every sentence we wrote for evaluation (hundreds,
/// in domains and lengths the reference file lacks).
#[test]
fn default_precision_stays_within_0_999_of_f32() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../eval");
    let mut texts = Vec::new();
    for entry in std::fs::read_dir(dir).expect("reading eval/") {
        let path = entry.expect("listing eval/").path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        let file = std::fs::read_to_string(&path).expect("reading an eval file");
        for line in file.lines().filter(|l| !l.trim().is_empty()) {
            let value: serde_json::Value = serde_json::from_str(line).expect("an eval line");
            if let Some(text) = value["text"].as_str() {
                texts.push(text.to_string());
            }
        }
    }
    assert!(texts.len() >= 300, "{} sentences", texts.len());
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let want = exact().encode(&texts).expect("encoding in f32");
    let got = encoder().encode(&texts).expect("encoding by default");
    let mut lowest = f32::MAX;
    for ((text, a), b) in texts.iter().zip(&want).zip(&got) {
        let c = cosine(a, b);
        assert!(c >= 0.999, "cosine {c} for {text:?}");
        lowest = lowest.min(c);
    }
    eprintln!(
        "{} sentences, bf16 {}: lowest cosine to f32 {lowest}",
        texts.len(),
        encoder().bf16()
    );
}

#[test]
fn batch_equals_one_by_one_and_keeps_order() {
    let reference = reference();
    // Mixed lengths in a scrambled order, so length sorting has to be undone.
    let texts: Vec<&str> = reference
        .items
        .iter()
        .rev()
        .map(|i| i.text.as_str())
        .collect();
    let batch = encoder().encode(&texts).expect("encoding the batch");
    assert_eq!(batch.len(), texts.len());
    for (text, vector) in texts.iter().zip(&batch) {
        let single = encoder().encode(&[text]).expect("encoding one");
        let c = cosine(vector, &single[0]);
        assert!(c >= 0.99999, "padding changed {text:?}: cosine {c}");
    }
}

#[test]
fn embeddings_have_unit_norm() {
    let vectors = encoder()
        .encode(&[
            "short",
            "a somewhat longer sentence, with punctuation!",
            "😊",
        ])
        .expect("encoding");
    for v in vectors {
        let norm = dot(&v, &v).sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
}

#[test]
fn large_batches_are_chunked_in_order() {
    // More sentences than one chunk holds, each distinct.
    let texts: Vec<String> = (0..150)
        .map(|i| format!("sentence number {i}{}", " and more".repeat(i % 7)))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batch = encoder().encode(&refs).expect("encoding");
    for i in [0, 63, 64, 100, 149] {
        let single = encoder().encode(&[refs[i]]).expect("encoding one");
        assert!(cosine(&batch[i], &single[0]) >= 0.99999, "sentence {i}");
    }
}

#[test]
fn empty_batch_gives_nothing() {
    assert!(encoder().encode(&[]).expect("encoding").is_empty());
}

#[test]
fn version_is_the_weights_checksum_prefix() {
    use sha2::{Digest, Sha256};
    let weights = std::fs::read(common::model_dir().join("model.safetensors")).expect("weights");
    let digest = hex::encode(Sha256::digest(&weights));
    assert_eq!(encoder().version(), &digest[..12]);
}
