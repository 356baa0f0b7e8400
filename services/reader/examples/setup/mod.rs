//! The reader as the examples load it: from `EMPATHY_ASSETS` (default `assets`), the
//! model READER names (default gemma-3-270m) in the precision PRECISION names (default
//! auto), which model and that precision.

use std::path::PathBuf;

use anyhow::Result;
use empathy_reader::{MeaningReader, Precision, ReaderModel};

pub fn reader() -> Result<(MeaningReader, ReaderModel, Precision)> {
    let assets =
        std::env::var_os("EMPATHY_ASSETS").map_or_else(|| PathBuf::from("assets"), PathBuf::from);
    let precision: Precision = std::env::var("PRECISION")
        .map_or(Ok(Precision::default()), |p| p.parse())
        .map_err(anyhow::Error::msg)?;
    let model: ReaderModel = std::env::var("READER")
        .map_or(Ok(ReaderModel::default()), |m| m.parse())
        .map_err(anyhow::Error::msg)?;
    Ok((
        MeaningReader::load_in(&assets.join(model.file()), precision)?,
        model,
        precision,
    ))
}
