//! The Gemma tokenizer read from the GGUF's own vocabulary: SentencePiece's BPE as
//! llama.cpp runs it (spaces become "▁", then the adjacent pair whose joined piece has
//! the highest score is merged until none is a piece; what is left and not a piece is
//! spelled as its UTF-8 bytes, "<0xXX>"). Pieces the vocabulary marks user-defined
//! (runs of newlines, spaces or tabs, some HTML tags) are cut out whole first, the
//! longest at the leftmost place, as transformers and llama.cpp do.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use candle_core::quantized::gguf_file::{Content, Value};

/// GGUF token types: 1 is a normal piece, 4 a user-defined one, 6 a byte piece.
const NORMAL: i32 = 1;
const USER_DEFINED: i32 = 4;
const BYTE: i32 = 6;

pub struct SpmTokenizer {
    /// Normal pieces and their merge scores.
    pieces: HashMap<String, (u32, f32)>,
    /// The "<0xXX>" piece of each byte.
    bytes: [u32; 256],
    /// User-defined pieces, and the longest one's length in bytes.
    whole: HashMap<String, u32>,
    longest_whole: usize,
    pub bos: u32,
}

impl SpmTokenizer {
    pub fn from_gguf(content: &Content) -> Result<SpmTokenizer> {
        let meta = |key: &str| {
            content
                .metadata
                .get(key)
                .with_context(|| format!("the GGUF has no {key}"))
        };
        let tokens = meta("tokenizer.ggml.tokens")?.to_vec()?;
        let scores = meta("tokenizer.ggml.scores")?.to_vec()?;
        let types = meta("tokenizer.ggml.token_type")?.to_vec()?;
        let bos = meta("tokenizer.ggml.bos_token_id")?.to_u32()?;
        if tokens.len() != scores.len() || tokens.len() != types.len() {
            bail!("the GGUF's tokens, scores and token types differ in number");
        }
        let mut pieces = HashMap::with_capacity(tokens.len());
        let mut bytes = [u32::MAX; 256];
        let mut whole = HashMap::new();
        for (id, ((token, score), kind)) in tokens.iter().zip(scores).zip(types).enumerate() {
            let id = u32::try_from(id)?;
            let (Value::String(token), Value::F32(score), Value::I32(kind)) = (token, score, kind)
            else {
                bail!("the GGUF's vocabulary has an entry of an unexpected type");
            };
            match *kind {
                NORMAL => {
                    pieces.insert(token.clone(), (id, *score));
                }
                USER_DEFINED => {
                    whole.insert(token.clone(), id);
                }
                BYTE => {
                    let hex = token
                        .strip_prefix("<0x")
                        .and_then(|t| t.strip_suffix('>'))
                        .with_context(|| format!("byte piece {token:?} is not <0xXX>"))?;
                    bytes[usize::from(u8::from_str_radix(hex, 16)?)] = id;
                }
                _ => {}
            }
        }
        if bytes.contains(&u32::MAX) {
            bail!("the GGUF's vocabulary lacks a piece for some byte");
        }
        let longest_whole = whole.keys().map(String::len).max().unwrap_or(0);
        Ok(SpmTokenizer {
            pieces,
            bytes,
            whole,
            longest_whole,
            bos,
        })
    }

    /// The ids of `text`, without BOS.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        let mut plain = 0;
        let mut i = 0;
        while i < text.len() {
            match self.whole_at(&text[i..]) {
                Some((id, len)) => {
                    ids.extend(self.merge(&text[plain..i]));
                    ids.push(id);
                    i += len;
                    plain = i;
                }
                None => i += text[i..].chars().next().map_or(1, char::len_utf8),
            }
        }
        ids.extend(self.merge(&text[plain..]));
        ids
    }

    /// The longest user-defined piece `text` starts with: its id and length.
    fn whole_at(&self, text: &str) -> Option<(u32, usize)> {
        (1..=self.longest_whole.min(text.len()))
            .rev()
            .filter(|&len| text.is_char_boundary(len))
            .find_map(|len| self.whole.get(&text[..len]).map(|&id| (id, len)))
    }

    /// The ids of a text with no user-defined piece in it.
    fn merge(&self, text: &str) -> Vec<u32> {
        let text = text.replace(' ', "▁");
        // Each symbol is a byte range of `text`, one character to begin with.
        let mut symbols: Vec<(usize, usize)> = text
            .char_indices()
            .map(|(i, c)| (i, i + c.len_utf8()))
            .collect();
        // Merge the best-scoring adjacent pair (the leftmost on a tie) until none joins
        // into a piece. Sentences are short, so a scan per merge is cheap enough.
        loop {
            let mut best: Option<(usize, f32)> = None;
            for i in 0..symbols.len().saturating_sub(1) {
                let joined = &text[symbols[i].0..symbols[i + 1].1];
                if let Some(&(_, score)) = self.pieces.get(joined)
                    && best.is_none_or(|(_, s)| score > s)
                {
                    best = Some((i, score));
                }
            }
            let Some((i, _)) = best else { break };
            symbols[i].1 = symbols[i + 1].1;
            symbols.remove(i + 1);
        }
        let mut ids = Vec::with_capacity(symbols.len());
        for (start, end) in symbols {
            let symbol = &text[start..end];
            match self.pieces.get(symbol) {
                Some(&(id, _)) => ids.push(id),
                None => ids.extend(symbol.bytes().map(|b| self.bytes[usize::from(b)])),
            }
        }
        ids
    }
}
