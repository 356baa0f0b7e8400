//! Text embeddings of the corpus cached on disk, so retraining skips the encoder.
//! File: magic, rows and width (u64 LE), then rows*width f32 LE.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"EMPEMB01";

/// `$EMPATHY_EMBEDDING_CACHE` (where a deployment shares one between `empathy train`
/// and the trainer), else `$XDG_CACHE_HOME/empathy/embeddings`, else
/// `~/.cache/empathy/embeddings`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("EMPATHY_EMBEDDING_CACHE").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("empathy").join("embeddings"))
}

/// The cache file for these texts: keyed by the encoder, the data file and the
/// texts themselves (so a change in deduplication cannot reuse stale rows).
pub fn path(dir: &Path, encoder_id: &str, data_sha256: &str, texts: &[String]) -> PathBuf {
    let mut texts_hash = Sha256::new();
    for t in texts {
        texts_hash.update(t.as_bytes());
        texts_hash.update([0]);
    }
    let mut key = Sha256::new();
    key.update(encoder_id.as_bytes());
    key.update([0]);
    key.update(data_sha256.as_bytes());
    key.update([0]);
    key.update(texts_hash.finalize());
    dir.join(format!("{}.bin", hex::encode(key.finalize())))
}

/// The cached rows, if the file exists and holds `rows` x `width` values.
pub fn load(path: &Path, rows: usize, width: usize) -> Option<Vec<f32>> {
    let bytes = std::fs::read(path).ok()?;
    let header = MAGIC.len() + 16;
    if bytes.len() != header + rows * width * 4 || &bytes[..MAGIC.len()] != MAGIC {
        return None;
    }
    let field = |i: usize| {
        let start = MAGIC.len() + 8 * i;
        bytes[start..start + 8]
            .try_into()
            .ok()
            .map(u64::from_le_bytes)
    };
    if field(0)? != rows as u64 || field(1)? != width as u64 {
        return None;
    }
    Some(
        bytes[header..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Writes atomically (temp file, then rename).
pub fn store(path: &Path, rows: usize, width: usize, values: &[f32]) -> anyhow::Result<()> {
    ensure!(
        values.len() == rows * width,
        "embedding cache: wrong number of values"
    );
    let dir = path
        .parent()
        .context("embedding cache path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut bytes = Vec::with_capacity(MAGIC.len() + 16 + values.len() * 4);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(rows as u64).to_le_bytes());
    bytes.extend_from_slice(&(width as u64).to_le_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_mismatch() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("empathy-embcache-{}", std::process::id()));
        let texts = vec!["a".to_string(), "b".to_string()];
        let p = path(&dir, "enc", "sha", &texts);
        assert_ne!(p, path(&dir, "enc2", "sha", &texts));
        assert_ne!(p, path(&dir, "enc", "sha", &texts[..1]));
        assert!(load(&p, 2, 3).is_none());
        let values = [1.0, 2.0, 3.0, 4.0, 5.0, -6.5];
        store(&p, 2, 3, &values)?;
        assert_eq!(load(&p, 2, 3), Some(values.to_vec()));
        assert!(load(&p, 3, 2).is_none());
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
