//! Test helpers: the downloaded assets, temp directories, synthetic inputs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::lexicon::{LEXICON_FEATURES, LexiconAnalysis};

/// `$EMPATHY_ASSETS`, else `<workspace>/assets`; panics with the fix when missing.
pub fn assets_dir() -> PathBuf {
    let dir = std::env::var_os("EMPATHY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets"));
    assert!(
        dir.join("lexicon/vader/vader_lexicon.txt").is_file(),
        "assets not found in {}: run `empathy assets fetch` (or set EMPATHY_ASSETS)",
        dir.display()
    );
    dir
}

/// A fresh directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("empathy-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A lexicon analysis with the given features (and neutral everything else).
pub fn analysis(fill: f32) -> LexiconAnalysis {
    LexiconAnalysis {
        features: vec![fill; LEXICON_FEATURES],
        vader_compound: 0.0,
        emotions: [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        valence: 0.0,
        arousal: -0.3,
        words: Vec::new(),
    }
}
