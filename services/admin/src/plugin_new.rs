//! `empathy plugin new NAME`: a plugin crate of its own, made from `plugins/template`
//! (embedded here at build time), that depends on the plugin API crate alone.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The template's files, by their path in the new crate.
const FILES: [(&str, &str); 5] = [
    (
        "Cargo.toml",
        include_str!("../../../plugins/template/Cargo.toml"),
    ),
    (
        ".gitignore",
        include_str!("../../../plugins/template/.gitignore"),
    ),
    (
        "README.md",
        include_str!("../../../plugins/template/README.md"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../plugins/template/src/lib.rs"),
    ),
    (
        "tests/in_host.rs",
        include_str!("../../../plugins/template/tests/in_host.rs"),
    ),
];

/// The template's own name in its files, and what each becomes.
const TEMPLATE_CRATE: &str = "empathy-plugin-signal";
const TEMPLATE_LIB: &str = "empathy_plugin_signal";
const TEMPLATE_MODALITY: [&str; 2] = ["\"signal\"", "signal."];
const TEMPLATE_API: &str = "path = \"../api\"";

#[derive(clap::Args)]
pub struct NewArgs {
    /// The modality, e.g. heart-rate (lower-case letters, digits, '-'); the plugin
    /// serves it as heart_rate.
    name: String,
    /// Where to create the crate [default: ./empathy-plugin-NAME].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The plugin API crate to build against [default: this checkout's plugins/api].
    #[arg(long)]
    api: Option<PathBuf>,
}

pub fn new(args: &NewArgs) -> anyhow::Result<()> {
    let name = args.name.as_str();
    let valid = name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "{name:?} is not a plugin name: 1-40 lower-case letters, digits and '-', a letter first"
        );
    }
    let api = match &args.api {
        Some(api) => api.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/api"),
    };
    let api = std::fs::canonicalize(&api).with_context(|| {
        format!(
            "the plugin API crate is not at {}: pass --api PATH",
            api.display()
        )
    })?;
    let manifest = std::fs::read_to_string(api.join("Cargo.toml")).unwrap_or_default();
    if !manifest.contains("name = \"empathy-plugin-api\"") {
        bail!(
            "{} is not the empathy-plugin-api crate: pass --api PATH",
            api.display()
        );
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("empathy-plugin-{name}")));
    if dir
        .read_dir()
        .is_ok_and(|mut entries| entries.next().is_some())
    {
        bail!(
            "{} exists and is not empty: choose another --dir",
            dir.display()
        );
    }
    for (path, text) in FILES {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = render(text, name, &api);
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    }
    let modality = name.replace('-', "_");
    println!(
        "created {dir}: the {modality} modality, a crate that depends on {api} alone.\n\
         next:\n  cd {dir} && cargo test\n  \
         then its README: make it yours, build, pin and load it in the encoder.",
        dir = dir.display(),
        api = api.display(),
    );
    Ok(())
}

/// The template's `text` for the plugin `name`, built against the API crate at `api`.
fn render(text: &str, name: &str, api: &Path) -> String {
    let modality = name.replace('-', "_");
    let api_path = format!("path = {:?}", api.display().to_string());
    text.replace(TEMPLATE_CRATE, &format!("empathy-plugin-{name}"))
        .replace(TEMPLATE_LIB, &format!("empathy_plugin_{modality}"))
        .replace(TEMPLATE_MODALITY[0], &format!("{modality:?}"))
        .replace(TEMPLATE_MODALITY[1], &format!("{modality}."))
        .replace(TEMPLATE_API, &api_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_in_the_template_is_replaced() {
        let api = Path::new("/opt/empathy/plugins/api");
        let all: String = FILES
            .iter()
            .map(|(_, text)| render(text, "heart-rate", api))
            .collect();
        assert!(!all.contains("empathy-plugin-signal") && !all.contains("empathy_plugin_signal"));
        assert!(!all.contains("\"signal\"") && !all.contains("../api"));
        assert!(all.contains("pub const MODALITY: &str = \"heart_rate\";"));
        assert!(all.contains("name = \"empathy-plugin-heart-rate\""));
        assert!(all.contains("empathy_plugin_heart_rate::MODALITY"));
        assert!(all.contains("path = \"/opt/empathy/plugins/api\""));
        // Every marker is in the template, so a renamed line breaks this test, not users.
        let template: String = FILES.iter().map(|(_, text)| *text).collect();
        for marker in [TEMPLATE_CRATE, TEMPLATE_LIB, TEMPLATE_API]
            .into_iter()
            .chain(TEMPLATE_MODALITY)
        {
            assert!(template.contains(marker), "{marker}");
        }
    }
}
