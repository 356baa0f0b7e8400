//! The published artifact: its TSV lines, and the numbered version directories.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};

use super::{ExpansionManifest, POLARITY_LABELS};

// The artifact's header: the serving model's parser owns it.
use empathy_model::lexicon::expansion::TSV_HEADER;

/// One candidate's line: its emotion (named by `emotion_label`) and polarity, each with
/// its confidence, or "-" and 0 where propagation did not reach it.
fn tsv_row(
    word: &str,
    count: usize,
    emotion: Option<(usize, f32)>,
    emotion_label: &dyn Fn(usize) -> &'static str,
    polarity: Option<(usize, f32)>,
) -> String {
    let cell = |x: Option<(usize, f32)>, name: &dyn Fn(usize) -> &'static str| match x {
        Some((c, conf)) => format!("{}\t{conf:.4}", name(c)),
        None => "-\t0".to_string(),
    };
    format!(
        "{word}\t{count}\t{}\t{}\n",
        cell(emotion, emotion_label),
        cell(polarity, &|c| POLARITY_LABELS[c]),
    )
}

/// The artifact's lines, and how many candidates got an emotion and a polarity.
pub(crate) struct Table {
    pub tsv: String,
    pub emotion_labelled: usize,
    pub polarity_labelled: usize,
}

impl Table {
    pub fn new() -> Table {
        Table {
            tsv: String::from(TSV_HEADER),
            emotion_labelled: 0,
            polarity_labelled: 0,
        }
    }

    /// Adds a candidate's line (see `tsv_row`) and counts its labels.
    pub fn push(
        &mut self,
        word: &str,
        count: usize,
        emotion: Option<(usize, f32)>,
        emotion_label: &dyn Fn(usize) -> &'static str,
        polarity: Option<(usize, f32)>,
    ) {
        self.emotion_labelled += usize::from(emotion.is_some());
        self.polarity_labelled += usize::from(polarity.is_some());
        self.tsv
            .push_str(&tsv_row(word, count, emotion, emotion_label, polarity));
    }
}

/// Writes `<out>/vNNNN` through a hidden temp directory and a rename; names and
/// dates the manifest.
pub(crate) fn publish(
    out_dir: &Path,
    tsv: &str,
    mut manifest: ExpansionManifest,
) -> anyhow::Result<(PathBuf, ExpansionManifest)> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    manifest.created_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let tmp = out_dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        manifest.created_unix_ms
    ));
    std::fs::create_dir_all(&tmp)?;
    let result = (|| -> anyhow::Result<(PathBuf, ExpansionManifest)> {
        let next = latest_number(out_dir)?.map_or(1, |n| n + 1);
        manifest.version = format!("v{next:04}");
        write_synced(&tmp.join("lexicon.tsv"), tsv.as_bytes())?;
        write_synced(
            &tmp.join("manifest.json"),
            serde_json::to_string_pretty(&manifest)?.as_bytes(),
        )?;
        let dest = out_dir.join(&manifest.version);
        ensure!(!dest.exists(), "{} already exists", dest.display());
        std::fs::rename(&tmp, &dest)
            .with_context(|| format!("cannot publish {}", dest.display()))?;
        if let Ok(d) = std::fs::File::open(out_dir) {
            d.sync_all().ok();
        }
        Ok((dest, manifest))
    })();
    if result.is_err() {
        std::fs::remove_dir_all(&tmp).ok();
    }
    result
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// The highest NNNN of the `vNNNN` directories with a manifest.
fn latest_number(out_dir: &Path) -> anyhow::Result<Option<u32>> {
    let mut best = None;
    for entry in std::fs::read_dir(out_dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix('v').and_then(|d| d.parse::<u32>().ok())
            && entry.path().join("manifest.json").exists()
        {
            best = best.max(Some(n));
        }
    }
    Ok(best)
}

/// The newest published expansion, if any.
pub fn latest_version(out_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    if !out_dir.exists() {
        return Ok(None);
    }
    Ok(latest_number(out_dir)?.map(|n| out_dir.join(format!("v{n:04}"))))
}
