//! Finding and loading the plugin libraries named on the command line.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context;
use empathy_plugin_api::host::{AllowList, LoadedPlugin, library_file_name};
use empathy_proto::v1::PluginConfig;

pub struct LoadSpec {
    pub plugin_dir: PathBuf,
    pub allow: Option<AllowList>,
    pub assets: PathBuf,
    pub threads: u32,
    pub device: String,
    pub settings: HashMap<String, String>,
}

/// The directory of the running executable: where cargo (and our images) put the
/// plugin libraries next to the binaries.
pub fn exe_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate this executable")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("this executable has no parent directory")
}

/// "text" -> `<dir>/libempathy_plugin_text.so`; anything that looks like a path is
/// taken as it is.
pub fn resolve(name: &str, dir: &Path) -> PathBuf {
    if name.contains(std::path::MAIN_SEPARATOR) || name.contains('.') {
        PathBuf::from(name)
    } else {
        dir.join(library_file_name(&format!("empathy_plugin_{name}")))
    }
}

pub fn allow_list(digests: &[String], file: Option<&Path>) -> anyhow::Result<Option<AllowList>> {
    let mut all: Vec<String> = digests.to_vec();
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the allow-list {}", f.display()))?;
        all.extend(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
                .filter(|l| !l.is_empty()),
        );
    }
    if all.is_empty() && file.is_none() {
        return Ok(None);
    }
    Ok(Some(AllowList::from_hex(&all)?))
}

/// Loads every plugin or fails naming the one that could not be loaded: an encoder
/// that silently lacks a modality would only surface later as degraded answers.
pub fn load_all(names: &[String], spec: &LoadSpec) -> anyhow::Result<Vec<Arc<LoadedPlugin>>> {
    let config = PluginConfig {
        assets_dir: spec.assets.to_string_lossy().into_owned(),
        threads: spec.threads,
        device: spec.device.clone(),
        settings: spec.settings.clone(),
    };
    names
        .iter()
        .map(|name| {
            let path = resolve(name, &spec.plugin_dir);
            let started = std::time::Instant::now();
            let plugin = LoadedPlugin::load(&path, &config, spec.allow.as_ref())
                .with_context(|| format!("cannot load plugin {name:?}"))?;
            tracing::info!(path = %path.display(), sha256 = plugin.sha256(), ms = started.elapsed().as_millis() as u64, "plugin loaded");
            Ok(Arc::new(plugin))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_resolve_in_the_plugin_dir_and_paths_stay() {
        let dir = Path::new("/opt/empathy");
        let text = resolve("text", dir);
        assert!(text.starts_with(dir));
        assert!(text.to_string_lossy().contains("empathy_plugin_text"));
        assert_eq!(resolve("./my.so", dir), PathBuf::from("./my.so"));
    }
}
