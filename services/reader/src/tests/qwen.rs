//! The larger reader, Qwen2.5-Coder-1.5B-Instruct, through our decoder against
//! candle-transformers' own quantized Qwen2 on the same file and the same prompt ids:
//! a second implementation of the network (no transformers here for Qwen2). candle's
//! multiplies quantized blocks with 8-bit activations, so the two differ by rounding
//! (up to 0.55 nats on an unlikely answer), and a missing bias, a wrong rotation or
//! norm would change the answers outright. With `CANDLE_DEQUANTIZE_ALL=1` candle
//! multiplies in f32 as we do, and the two agree within 0.02 nats:
//!
//!   CANDLE_DEQUANTIZE_ALL=1 cargo test -p empathy-reader answers_as_candle

use std::{path::PathBuf, sync::OnceLock};

use candle_core::{D, Device, Tensor, quantized::gguf_file};
use candle_transformers::models::quantized_qwen2::ModelWeights;

use crate::{LABEL_WORDS, MeaningReader, Precision, ReaderModel, prompt};

fn path() -> PathBuf {
    let assets = std::env::var_os("EMPATHY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets"));
    assets.join(ReaderModel::Qwen25Coder_1_5b.file())
}

fn qwen() -> &'static MeaningReader {
    static READER: OnceLock<MeaningReader> = OnceLock::new();
    READER.get_or_init(|| {
        MeaningReader::load_in(&path(), Precision::F32)
            .unwrap_or_else(|e| panic!("{}: {e:#}: run `empathy assets fetch`", path().display()))
    })
}

#[test]
fn the_larger_reader_answers_as_candle_s_qwen2() {
    let reader = qwen();
    let mut file = std::fs::File::open(path()).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut theirs = ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap();
    let answer_ids: Vec<u32> = LABEL_WORDS
        .iter()
        .map(|w| reader.tokenizer.encode(&format!(" {w}")).unwrap()[0])
        .collect();
    let texts = [
        "The food wasn't bad at all.",
        "They lost my bag and then hung up on me.",
        "The library opens at nine on weekdays.",
        "I can't believe how kind everyone has been to me.",
    ];
    let tolerance = match std::env::var_os("CANDLE_DEQUANTIZE_ALL") {
        Some(_) => 0.02,
        None => 0.75,
    };
    for text in texts {
        let mut ids = reader.tokenizer.encode(&prompt::FEELING.prefix()).unwrap();
        ids.extend(
            reader
                .prompt_ids(&reader.feeling, &prompt::text_line(text))
                .unwrap(),
        );
        theirs.clear_kv_cache();
        let logits = theirs
            .forward(
                &Tensor::new(ids.as_slice(), &Device::Cpu)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap(),
                0,
            )
            .unwrap()
            .squeeze(0)
            .unwrap();
        let picked = logits
            .index_select(
                &Tensor::new(answer_ids.as_slice(), &Device::Cpu).unwrap(),
                0,
            )
            .unwrap();
        let theirs = candle_nn::ops::log_softmax(&picked, D::Minus1)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let ours = reader.read(text).unwrap();
        let top = |r: &[f32]| (0..3).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap();
        assert_eq!(
            top(&ours),
            top(&theirs),
            "{text:?}: ours {ours:?}, candle's {theirs:?}"
        );
        for (a, b) in ours.iter().zip(&theirs) {
            assert!(
                (a - b).abs() < tolerance,
                "{text:?}: ours {ours:?}, candle's {theirs:?}"
            );
        }
    }
}

#[test]
fn the_larger_reader_reads_negation_and_what_happened() {
    let reader = qwen();
    let top = |text: &str| {
        let r = reader.read(text).unwrap();
        LABEL_WORDS[(0..3).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap()]
    };
    assert_eq!(
        top("The new dentist wasn't unpleasant at all, quite the opposite."),
        "positive"
    );
    assert_eq!(
        top("My landlord kept the whole deposit and won't return my calls."),
        "negative"
    );
    assert_eq!(
        top("The form asks for your postcode and date of birth."),
        "neutral"
    );
}
