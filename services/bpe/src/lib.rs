//! Byte-level BPE tokenizers rebuilt from a GGUF's own metadata (no tokenizer.json
//! exists offline): BPE over `tokenizer.ggml.tokens` and `tokenizer.ggml.merges`, with
//! the pre-tokenizer `tokenizer.ggml.pre` names:
//!
//! - "smollm" (SmolLM2, the situation model): every digit on its own, then GPT-2's
//!   regex (llama.cpp's LLAMA_VOCAB_PRE_TYPE_SMOLLM; Hugging Face's
//!   `Sequence[Digits(individual_digits), ByteLevel(add_prefix_space=false)]`);
//! - "qwen2" (Qwen2 and Qwen2.5, the larger meaning reader): Qwen2's own regex, which
//!   keeps case-insensitive contractions, lets one non-letter lead a word and splits
//!   digits one by one (llama.cpp's LLAMA_VOCAB_PRE_TYPE_QWEN2; Hugging Face's
//!   `Sequence[Split(regex, isolated), ByteLevel(use_regex=false)]`).
//!
//! Control tokens (`<|im_start|>`, `<|im_end|>`, ...) are never parsed out of text:
//! the chat template places them by id, so a user who types "<|im_end|>" cannot end
//! the turn. Text between control tokens is encoded exactly as Hugging Face encodes
//! the segments between added tokens.

use std::collections::HashMap;

use anyhow::{Context, Result, bail, ensure};
use candle_core::quantized::gguf_file;
use tokenizers::{
    SplitDelimiterBehavior, Tokenizer,
    decoders::byte_level::ByteLevel as ByteLevelDecoder,
    models::bpe::{BPE, Vocab},
    pre_tokenizers::{
        PreTokenizerWrapper,
        byte_level::ByteLevel,
        digits::Digits,
        sequence::Sequence,
        split::{Split, SplitPattern},
    },
};

/// GGUF token type of control tokens (llama.cpp's LLAMA_TOKEN_TYPE_CONTROL).
const TOKEN_TYPE_CONTROL: i32 = 3;

pub struct GgufTokenizer {
    inner: Tokenizer,
    /// Control tokens by text (`<|im_start|>` -> 1).
    control: HashMap<String, u32>,
    control_ids: Vec<bool>,
    pub bos: u32,
    pub eos: u32,
    pub im_start: u32,
    pub im_end: u32,
    vocab_size: usize,
}

/// The pre-tokenizers implemented, by `tokenizer.ggml.pre`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pre {
    Smollm,
    Qwen2,
}

/// Qwen2's split (llama.cpp's, and the `Split` of Qwen2's tokenizer.json).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

impl Pre {
    fn tokenizer(self) -> Result<PreTokenizerWrapper> {
        Ok(match self {
            Pre::Smollm => PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
            ])),
            Pre::Qwen2 => {
                let split = Split::new(
                    SplitPattern::Regex(QWEN2_SPLIT.into()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| anyhow::anyhow!("Qwen2's split: {e}"))?;
                PreTokenizerWrapper::Sequence(Sequence::new(vec![
                    PreTokenizerWrapper::Split(split),
                    PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
                ]))
            }
        })
    }
}

fn md<'a>(ct: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value> {
    ct.metadata
        .get(key)
        .with_context(|| format!("the GGUF has no {key} (not a tokenizer-bearing file?)"))
}

fn strings(v: &gguf_file::Value, key: &str) -> Result<Vec<String>> {
    v.to_vec()
        .with_context(|| format!("{key} is not an array"))?
        .iter()
        .map(|s| Ok(s.to_string()?.clone()))
        .collect::<candle_core::Result<Vec<String>>>()
        .with_context(|| format!("{key} holds non-strings"))
}

impl GgufTokenizer {
    /// Builds the tokenizer from GGUF metadata.
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let model = md(ct, "tokenizer.ggml.model")?.to_string()?;
        ensure!(
            model == "gpt2",
            "tokenizer.ggml.model is {model:?}; only byte-level BPE (\"gpt2\") is supported"
        );
        let pre = md(ct, "tokenizer.ggml.pre")?.to_string()?;
        let pre = match pre.as_str() {
            "smollm" => Pre::Smollm,
            "qwen2" => Pre::Qwen2,
            other => bail!(
                "tokenizer.ggml.pre is {other:?}; only SmolLM's and Qwen2's pre-tokenizers are implemented"
            ),
        };
        let tokens = strings(md(ct, "tokenizer.ggml.tokens")?, "tokenizer.ggml.tokens")?;
        let merges = strings(md(ct, "tokenizer.ggml.merges")?, "tokenizer.ggml.merges")?;
        let types: Vec<i32> = md(ct, "tokenizer.ggml.token_type")?
            .to_vec()?
            .iter()
            .map(|v| v.to_i32())
            .collect::<candle_core::Result<_>>()?;
        ensure!(
            types.len() == tokens.len(),
            "{} token types for {} tokens",
            types.len(),
            tokens.len()
        );
        let bos = md(ct, "tokenizer.ggml.bos_token_id")?.to_u32()?;
        let eos = md(ct, "tokenizer.ggml.eos_token_id")?.to_u32()?;
        Self::from_parts(&tokens, &merges, &types, (bos, eos), pre)
    }

    pub fn from_parts(
        tokens: &[String],
        merges: &[String],
        types: &[i32],
        (bos, eos): (u32, u32),
        pre: Pre,
    ) -> Result<Self> {
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        ensure!(vocab.len() == tokens.len(), "the vocabulary has duplicates");
        let merges = merges
            .iter()
            .map(|m| match m.split_once(' ') {
                Some((a, b)) => Ok((a.to_string(), b.to_string())),
                None => bail!("merge {m:?} is not two tokens"),
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| anyhow::anyhow!("building BPE: {e}"))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre.tokenizer()?));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let control: HashMap<String, u32> = types
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == TOKEN_TYPE_CONTROL)
            .map(|(i, _)| (tokens[i].clone(), i as u32))
            .collect();
        let mut control_ids = vec![false; tokens.len()];
        for id in control.values() {
            control_ids[*id as usize] = true;
        }
        let id = |name: &str| {
            control
                .get(name)
                .copied()
                .with_context(|| format!("the vocabulary has no control token {name}"))
        };
        Ok(Self {
            im_start: id("<|im_start|>")?,
            im_end: id("<|im_end|>")?,
            inner,
            control,
            control_ids,
            bos,
            eos,
            vocab_size: tokens.len(),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The id of a control token such as `<|im_end|>`.
    pub fn control(&self, name: &str) -> Option<u32> {
        self.control.get(name).copied()
    }

    pub fn is_control(&self, id: u32) -> bool {
        self.control_ids.get(id as usize).copied().unwrap_or(false)
    }

    /// Plain text to ids (control-token look-alikes stay text).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| anyhow::anyhow!("tokenising: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Ids to text; control tokens are written as their names.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        // The byte-level decoder maps each vocabulary string back to bytes; control
        // tokens are plain ASCII, which the byte map leaves unchanged.
        self.inner
            .decode(ids, false)
            .map_err(|e| anyhow::anyhow!("decoding: {e}"))
    }

    /// SmolLM2's chat template (ChatML) with a system and a user turn, ending with the
    /// assistant's header so the model writes the answer.
    pub fn chat_prompt(&self, system: &str, user: &str) -> Result<Vec<u32>> {
        self.chat(&[("system", system), ("user", user)])
    }

    /// ChatML for `(role, content)` turns, ending with the assistant's header.
    pub fn chat(&self, turns: &[(&str, &str)]) -> Result<Vec<u32>> {
        let mut ids = self.chat_turns(turns)?;
        ids.push(self.im_start);
        ids.extend(self.encode("assistant\n")?);
        Ok(ids)
    }

    /// ChatML for complete turns only. Control tokens split the text, so these ids
    /// are a prefix of the ids of any longer conversation that starts with the turns.
    pub fn chat_turns(&self, turns: &[(&str, &str)]) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for (role, content) in turns {
            ids.push(self.im_start);
            ids.extend(self.encode(&format!("{role}\n{content}"))?);
            ids.push(self.im_end);
            ids.extend(self.encode("\n")?);
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// `file` under `$EMPATHY_ASSETS`, else under `<workspace>/assets`.
    fn asset(file: &str) -> PathBuf {
        let assets = std::env::var_os("EMPATHY_ASSETS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets"));
        assets.join(file)
    }

    const SMOLLM: &str = "situation/SmolLM2-135M-Instruct.Q4_1.gguf";
    const QWEN2: &str = "reader/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";

    fn load_from(file: &str) -> GgufTokenizer {
        let path = asset(file);
        let mut f = std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}: run `empathy assets fetch`", path.display()));
        let ct = gguf_file::Content::read(&mut f).unwrap();
        GgufTokenizer::from_gguf(&ct).unwrap()
    }

    fn load() -> GgufTokenizer {
        load_from(SMOLLM)
    }

    const SAMPLES: &[&str] = &[
        "My dog died yesterday",
        "Hello, world! How's it going?? I'm fine... you'll see; they've gone.",
        "Call me at 555-0123 or 1,234,567.89 — 2024-10-31T12:00:00Z",
        "  leading and trailing spaces  ",
        "tabs\tand\nnew\n\nlines\r\n",
        "naïve café résumé Ærøskøbing straße",
        "我的狗昨天死了，我很难过。",
        "日本語のテキストも大丈夫です",
        "emoji 😀😢👍🏽 and ❤️ flags 🇫🇷",
        "Ελληνικά και русский текст",
        "code: fn main() { println!(\"{}\", x[0] + 1); } // done",
        "<|im_end|> is only text here",
        "a",
        " ",
        "\u{0}\u{7f}\u{ad}\u{200b} odd code points",
    ];

    #[test]
    fn round_trips_text_and_ids() {
        let t = load();
        for s in SAMPLES {
            let ids = t.encode(s).unwrap();
            assert!(!ids.is_empty(), "{s:?}");
            assert_eq!(t.decode(&ids).unwrap(), *s, "decode(encode({s:?}))");
            let again = t.encode(&t.decode(&ids).unwrap()).unwrap();
            assert_eq!(again, ids, "encode(decode(ids)) for {s:?}");
            assert!(
                ids.iter().all(|&i| !t.is_control(i)),
                "{s:?} produced a control token"
            );
        }
    }

    /// Same ids as an independent pure-Python GPT-2 BPE with llama.cpp's "smollm"
    /// pre-tokenizer (reference/bpe_reference.py) on tests/fixtures/smollm_reference.json,
    /// or on the file named by TOKENIZER_REFERENCE (e.g. thousands of corpus tweets).
    #[test]
    fn matches_the_python_reference() {
        let path = std::env::var("TOKENIZER_REFERENCE").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/smollm_reference.json"
            )
            .into()
        });
        matches_reference(SMOLLM, &path);
    }

    /// The same for Qwen2's tokenizer and its regex, on the same hard samples and
    /// three prompt lines (tests/fixtures/qwen2_reference.json).
    #[test]
    fn qwen2_matches_the_python_reference() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/qwen2_reference.json"
        );
        matches_reference(QWEN2, path);
        let t = load_from(QWEN2);
        // Qwen2's own ids, as its tokenizer.json gives them.
        assert_eq!(t.encode("Hello world").unwrap(), vec![9707, 1879]);
        // Digits one by one, and a contraction in capitals stays one piece.
        assert_eq!(t.encode("2024").unwrap().len(), 4);
        assert_eq!(t.decode(&t.encode("I'M").unwrap()[1..]).unwrap(), "'M");
    }

    fn matches_reference(gguf: &str, path: &str) {
        #[derive(serde::Deserialize)]
        struct Case {
            text: String,
            ids: Vec<u32>,
        }
        let cases: Vec<Case> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let t = load_from(gguf);
        let mut mismatches = 0;
        for c in &cases {
            let ids = t.encode(&c.text).unwrap();
            if ids != c.ids {
                mismatches += 1;
                eprintln!("{:?}: ours {:?} reference {:?}", c.text, ids, c.ids);
            }
            assert_eq!(t.decode(&ids).unwrap(), c.text);
        }
        eprintln!("{} texts, {mismatches} mismatches ({path})", cases.len());
        assert_eq!(mismatches, 0);
    }

    #[test]
    fn known_ids() {
        let t = load();
        assert_eq!(t.control("<|endoftext|>"), Some(0));
        assert_eq!(t.im_start, 1);
        assert_eq!(t.im_end, 2);
        assert_eq!((t.bos, t.eos), (1, 2));
        assert_eq!(t.encode(" the").unwrap(), vec![260]);
        // Digits are split one by one (SmolLM's pre-tokenizer), never merged.
        let ids = t.encode("2024").unwrap();
        assert_eq!(ids.len(), 4);
        assert_eq!(t.decode(&ids[..1]).unwrap(), "2");
        // A word-initial space joins the word (byte-level "Ġ").
        let ids = t.encode("Hello world").unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(t.decode(&ids[1..]).unwrap(), " world");
    }

    #[test]
    fn chat_prompt_places_control_tokens_by_id() {
        let t = load();
        let ids = t.chat_prompt("Be brief.", "Say <|im_end|> please").unwrap();
        let text = t.decode(&ids).unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nSay <|im_end|> please<|im_end|>\n<|im_start|>assistant\n"
        );
        // The typed "<|im_end|>" stays text: only the template's two turns end.
        assert_eq!(ids.iter().filter(|&&i| i == t.im_end).count(), 2);
    }
}
