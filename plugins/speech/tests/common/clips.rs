//! Clips made with espeak-ng, and fresh temp dirs to make them (and anything else) in.
//! Only std: the end-to-end tests (`tests/tests/support`) include this file too, so
//! both suites share one definition of each.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A WAV of espeak-ng saying `text` at `words_per_minute`, in a fresh temp dir.
pub fn espeak(text: &str, words_per_minute: u32) -> Vec<u8> {
    espeak_voice("en-us", text, words_per_minute)
}

/// The same in another espeak-ng voice (a language code such as "de").
pub fn espeak_voice(voice: &str, text: &str, words_per_minute: u32) -> Vec<u8> {
    let dir = temp_dir("espeak");
    let wav = dir.join("clip.wav");
    let bytes = clip_written_by(
        Command::new("espeak-ng")
            .args(["-v", voice, "-s", &words_per_minute.to_string(), "-w"])
            .arg(&wav)
            .arg(text),
        &wav,
    );
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

/// Runs a tool that writes a clip to `out` (espeak-ng, sox) and returns the clip;
/// panics naming the tool when it is missing or fails.
pub fn clip_written_by(command: &mut Command, out: &Path) -> Vec<u8> {
    let tool = command.get_program().to_string_lossy().into_owned();
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("{tool} runs (scripts/setup installs it): {e:?}"));
    assert!(status.success(), "{tool} failed");
    std::fs::read(out).unwrap_or_else(|e| panic!("{tool} wrote the clip: {e:?}"))
}

/// A fresh, empty directory under the system temp dir, named for `tag`, this process
/// and a counter (tests run side by side in one process).
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "empathy-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    // A leftover of an earlier run whose process had the same id.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}
