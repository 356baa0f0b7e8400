//! `empathy-whisper-convert ASSETS_DIR OUT.bin MODEL.bin [MORE_PARTS...]`: the converter
//! on its own (`empathy assets fetch` runs the same code).

use std::path::PathBuf;
use std::process::ExitCode;

use empathy_whisper_convert::{WhisperAssets, convert};

const USAGE: &str = "usage: empathy-whisper-convert WHISPER_ASSETS_DIR OUT.bin MODEL.bin [MORE_PARTS...]\n\
  WHISPER_ASSETS_DIR holds openai-whisper's mel_filters.npz, gpt2.tiktoken and multilingual.tiktoken;\n\
  MODEL.bin is a CTranslate2 Whisper model (give its parts in order to concatenate them).";

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [assets, out, parts @ ..] = args.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if parts.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    match convert(parts, &WhisperAssets::in_dir(assets), out) {
        Ok(c) => {
            println!(
                "{}: {:?}, {} tensors, {} tokens",
                out.display(),
                c.hparams,
                c.tensors,
                c.vocab
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
