//! The two things a ggml file needs that a CTranslate2 model lacks, read from
//! openai-whisper's `whisper/assets/`: the mel filterbank and the byte-level vocabulary.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use base64::Engine;

/// A mel filterbank: `n_mel` rows of `n_fft` (= 1 + 400/2) weights.
#[derive(Debug)]
pub struct MelFilters {
    pub n_mel: usize,
    pub n_fft: usize,
    pub data: Vec<f32>,
}

/// `mel_{n_mel}` from `mel_filters.npz` (a zip of `.npy` arrays).
pub fn mel_filters(npz: &Path, n_mel: usize) -> anyhow::Result<MelFilters> {
    let file =
        std::fs::File::open(npz).with_context(|| format!("cannot open {}", npz.display()))?;
    let mut zip = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not an .npz archive", npz.display()))?;
    let entry = format!("mel_{n_mel}.npy");
    let mut bytes = Vec::new();
    zip.by_name(&entry)
        .with_context(|| format!("{} has no {entry}", npz.display()))?
        .read_to_end(&mut bytes)?;
    let (shape, data) =
        parse_npy_f32(&bytes).with_context(|| format!("{entry} in {}", npz.display()))?;
    let [rows, cols] = shape[..] else {
        bail!("{entry} has shape {shape:?}, expected two dimensions");
    };
    ensure!(rows == n_mel, "{entry} has {rows} rows, expected {n_mel}");
    Ok(MelFilters {
        n_mel,
        n_fft: cols,
        data,
    })
}

/// A little-endian float32, C-order `.npy` array (format versions 1 to 3).
fn parse_npy_f32(bytes: &[u8]) -> anyhow::Result<(Vec<usize>, Vec<f32>)> {
    ensure!(
        bytes.starts_with(b"\x93NUMPY") && bytes.len() > 10,
        "not a .npy array"
    );
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() > 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => bail!(".npy format version {v} is not supported"),
    };
    let header = bytes
        .get(start..start + header_len)
        .context("the .npy header is truncated")?;
    let header = std::str::from_utf8(header)?;
    ensure!(
        header.contains("'descr': '<f4'"),
        "expected little-endian float32: {header}"
    );
    ensure!(
        header.contains("'fortran_order': False"),
        "expected C order: {header}"
    );
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .context("the .npy header has no shape")?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .with_context(|| format!("bad dimension {s:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let data: Vec<f32> = bytes[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    ensure!(
        data.len() == shape.iter().product::<usize>(),
        "the .npy data does not match its shape {shape:?}"
    );
    Ok((shape, data))
}

/// The byte strings of a tiktoken file (`base64 rank` per line), in rank order.
pub fn tiktoken_vocab(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut tokens: Vec<(usize, Vec<u8>)> = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut parts = line.split_whitespace();
        let (Some(b64), Some(rank), None) = (parts.next(), parts.next(), parts.next()) else {
            bail!("{}:{}: expected `base64 rank`", path.display(), n + 1);
        };
        // Padding is dropped before decoding: the multilingual file writes the empty
        // token (rank 50256) as a lone "=".
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b64.trim_end_matches('='))
            .with_context(|| format!("{}:{}: bad base64", path.display(), n + 1))?;
        let rank = rank
            .parse()
            .with_context(|| format!("{}:{}: bad rank", path.display(), n + 1))?;
        tokens.push((rank, bytes));
    }
    tokens.sort_by_key(|(rank, _)| *rank);
    ensure!(
        tokens.iter().enumerate().all(|(i, (rank, _))| i == *rank),
        "{}: ranks are not 0..n without gaps",
        path.display()
    );
    Ok(tokens.into_iter().map(|(_, bytes)| bytes).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_float32_npy() {
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        for v in [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0] {
            bytes.extend(v.to_le_bytes());
        }
        let (shape, data) = parse_npy_f32(&bytes).expect("parses");
        assert_eq!(shape, [2, 3]);
        assert_eq!(data[5], 6.0);
        assert!(parse_npy_f32(&bytes[..bytes.len() - 4]).is_err());
    }

    #[test]
    fn reads_tiktoken_in_rank_order() {
        let dir = std::env::temp_dir().join(format!("tiktoken-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("t.tiktoken");
        // "IQ==" is "!", "Ig==" is "\"", "=" is the empty token.
        std::fs::write(&path, "Ig== 1\nIQ== 0\n= 2\n").expect("write");
        let vocab = tiktoken_vocab(&path).expect("reads");
        assert_eq!(vocab, [b"!".to_vec(), b"\"".to_vec(), Vec::new()]);
        std::fs::write(&path, "IQ== 0\nIg== 2\n").expect("write");
        assert!(tiktoken_vocab(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
