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

/// The allow-list from the flags. None (any library loads) only when asked for with
/// `insecure`: loading a library runs its code.
pub fn allow_list(
    digests: &[String],
    file: Option<&Path>,
    insecure: bool,
) -> anyhow::Result<Option<AllowList>> {
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
        if !insecure {
            anyhow::bail!(
                "no plugin allow-list: pin each plugin with --allow-sha256 <digest> (its \
                 `sha256sum`) or --allow-list FILE (one digest a line); `empathy up` pins the \
                 plugins it starts. --insecure-plugins loads any library (local development \
                 only: loading a library runs its code)"
            );
        }
        tracing::warn!("--insecure-plugins: loading plugins without an allow-list");
        return Ok(None);
    }
    Ok(Some(AllowList::from_hex(&all)?))
}

/// The short name a plugin's settings are scoped by: "text" for `text` and for
/// `/opt/libempathy_plugin_text.so`.
fn scope(name: &str) -> &str {
    let stem = Path::new(name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(name);
    let stem = stem.strip_prefix("lib").unwrap_or(stem);
    stem.strip_prefix("empathy_plugin_").unwrap_or(stem)
}

/// One plugin's settings: `speech.model=base` reaches only the plugin `speech` (as
/// `model=base`); a key without a scope reaches every plugin. Plugins refuse keys they
/// do not know, so scoping is what lets two plugins be configured side by side.
fn settings_for(name: &str, all: &HashMap<String, String>) -> HashMap<String, String> {
    let scope = scope(name);
    let mut mine: HashMap<String, String> = all
        .iter()
        .filter(|(key, _)| !key.contains('.'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // A scoped key overrides the same key given to every plugin.
    mine.extend(all.iter().filter_map(|(key, value)| {
        let (s, k) = key.split_once('.')?;
        (s == scope).then(|| (k.to_string(), value.clone()))
    }));
    mine
}

/// Loads every plugin or fails naming the one that could not be loaded: an encoder
/// that silently lacks a modality would only surface later as degraded answers.
pub fn load_all(names: &[String], spec: &LoadSpec) -> anyhow::Result<Vec<Arc<LoadedPlugin>>> {
    names
        .iter()
        .map(|name| {
            let config = PluginConfig {
                assets_dir: spec.assets.to_string_lossy().into_owned(),
                threads: spec.threads,
                device: spec.device.clone(),
                settings: settings_for(name, &spec.settings),
            };
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
    fn an_allow_list_is_required_unless_insecure() {
        let err = allow_list(&[], None, false).expect_err("refused without a list");
        let message = err.to_string();
        assert!(
            message.contains("--allow-sha256") && message.contains("--insecure-plugins"),
            "{message}"
        );
        assert!(matches!(allow_list(&[], None, true), Ok(None)));
        let digest = "00".repeat(32);
        assert!(matches!(allow_list(&[digest], None, false), Ok(Some(_))));
    }

    #[test]
    fn short_names_resolve_in_the_plugin_dir_and_paths_stay() {
        let dir = Path::new("/opt/empathy");
        let text = resolve("text", dir);
        assert!(text.starts_with(dir));
        assert!(text.to_string_lossy().contains("empathy_plugin_text"));
        assert_eq!(resolve("./my.so", dir), PathBuf::from("./my.so"));
    }

    #[test]
    fn scoped_settings_reach_only_their_plugin() {
        let all: HashMap<String, String> = [
            ("speech.model", "base"),
            ("text.max_batch", "8"),
            ("max_batch", "4"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let speech = settings_for("/opt/libempathy_plugin_speech.so", &all);
        assert_eq!(speech.get("model").map(String::as_str), Some("base"));
        assert_eq!(speech.get("max_batch").map(String::as_str), Some("4"));
        assert_eq!(speech.len(), 2);
        let text = settings_for("text", &all);
        assert_eq!(text.get("max_batch").map(String::as_str), Some("8"));
        assert!(!text.contains_key("model"));
    }
}
