//! The model registry: a directory of immutable versions (`vNNNN/`, written by
//! `checkpoint::save_version`: temp dir, fsync, rename) and a `serving` pointer file
//! naming the version that serves. The pointer is replaced atomically (write a temp
//! file, fsync, rename, fsync the directory), so a reader sees the old or the new
//! name, never a torn one; rollback is a pointer write. Without a pointer the newest
//! valid version serves (`latest_version`), as before the registry had one.
//!
//! Lines (issue 13): the registry's own versions are the base line, which only an
//! admin changes (`empathy train`, a base rollback). Each tenant's feedback trains that
//! tenant's line, `tenants/<tenant>/` (versions and a pointer, the same layout), whose
//! first version's parent is a base version. A version id names its line: `v0003` is
//! the base's, `acme/v0002` the tenant acme's. A tenant without a line (or whose
//! pointer names a base version, after a rollback past its first version) serves the
//! base's serving version.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};

use crate::checkpoint::{Manifest, latest_version, read_version};
pub use crate::version_id::{is_version_name, parse_version_id, version_id};

pub const SERVING_FILE: &str = "serving";

/// The directory under a registry that holds the tenants' lines.
pub const TENANTS_DIR: &str = "tenants";

pub use empathy_proto::is_tenant_name;

/// The directory of `tenant`'s line (which need not exist yet).
pub fn line_dir(models_dir: &Path, tenant: &str) -> anyhow::Result<PathBuf> {
    ensure!(
        is_tenant_name(tenant),
        "{tenant:?} is not a tenant name (1-64 of a-z, 0-9, '-' and '_')"
    );
    Ok(models_dir.join(TENANTS_DIR).join(tenant))
}

/// The directory of the version `id` names (which need not exist).
pub fn version_dir(models_dir: &Path, id: &str) -> anyhow::Result<PathBuf> {
    Ok(match parse_version_id(id)? {
        (Some(tenant), name) => line_dir(models_dir, tenant)?.join(name),
        (None, name) => models_dir.join(name),
    })
}

/// The version id `tenant`'s line pointer names (`tenants/<tenant>/serving`): one of
/// the line's versions, or a base version (after a rollback past the line's first
/// version); None without a pointer.
pub fn line_pointer(models_dir: &Path, tenant: &str) -> anyhow::Result<Option<String>> {
    let path = line_dir(models_dir, tenant)?.join(SERVING_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let id = s.trim().to_string();
            let owner = parse_version_id(&id)
                .with_context(|| format!("{} holds {id:?}", path.display()))?
                .0;
            ensure!(
                owner.is_none() || owner == Some(tenant),
                "{} names {id:?}, a version of another tenant's line",
                path.display()
            );
            Ok(Some(id))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The version that serves `tenant` and its id: what its line pointer names, else the
/// base line's serving version. A pointer at a version that does not load is an
/// error (as for the base), never a fallback.
pub fn serving_for(models_dir: &Path, tenant: &str) -> anyhow::Result<(PathBuf, String)> {
    let Some(id) = line_pointer(models_dir, tenant)? else {
        let dir = serving_version(models_dir)?;
        let name = dir_name(&dir);
        return Ok((dir, name));
    };
    let dir = version_dir(models_dir, &id)?;
    crate::FusionModel::load(&dir).with_context(|| {
        format!(
            "tenant {tenant}'s serving pointer names {id}, which does not load; point it at \
             a version that does (`empathy rollback --tenant {tenant} VERSION`)"
        )
    })?;
    Ok((dir, id))
}

/// Points `tenant`'s line at version `id` (of its line, or of the base), which must
/// exist and pass its checksum.
pub fn set_line_serving(models_dir: &Path, tenant: &str, id: &str) -> anyhow::Result<()> {
    let owner = parse_version_id(id)?.0;
    ensure!(
        owner.is_none() || owner == Some(tenant),
        "{id} is a version of another tenant's line"
    );
    let dir = version_dir(models_dir, id)?;
    if !dir.is_dir() {
        bail!("no model version {id} in {}", models_dir.display());
    }
    read_version(&dir).with_context(|| format!("version {id} cannot serve"))?;
    let line = line_dir(models_dir, tenant)?;
    std::fs::create_dir_all(&line).with_context(|| format!("cannot create {}", line.display()))?;
    write_pointer(&line, id)
}

/// Every tenant with a line directory, sorted.
pub fn tenants_with_lines(models_dir: &Path) -> anyhow::Result<Vec<String>> {
    let dir = models_dir.join(TENANTS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| is_tenant_name(n))
        .collect();
    names.sort();
    Ok(names)
}

/// A directory's last component (a version's name).
pub fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The version the pointer names, if there is a pointer.
pub fn serving_pointer(models_dir: &Path) -> anyhow::Result<Option<String>> {
    let path = models_dir.join(SERVING_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let name = s.trim().to_string();
            ensure!(
                is_version_name(&name),
                "{} holds {name:?}, not a model version name",
                path.display()
            );
            Ok(Some(name))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The directory of the version that serves: the pointer's; the newest valid version
/// only while there is no pointer yet (a fresh registry). A pointer that names a
/// version that does not load is an error, never a fallback: the newest version may be
/// the very one an admin rolled back from.
pub fn serving_version(models_dir: &Path) -> anyhow::Result<PathBuf> {
    let Some(name) = serving_pointer(models_dir)? else {
        return latest_version(models_dir);
    };
    let dir = models_dir.join(&name);
    crate::FusionModel::load(&dir).with_context(|| {
        format!(
            "the serving pointer in {} names {name}, which does not load; point it at a \
             version that does (`empathy rollback VERSION`)",
            models_dir.display()
        )
    })?;
    Ok(dir)
}

/// Points `serving` at `version` (which must exist and pass its checksum).
pub fn set_serving(models_dir: &Path, version: &str) -> anyhow::Result<()> {
    ensure!(
        is_version_name(version),
        "{version:?} is not a model version name (like v0002)"
    );
    let dir = models_dir.join(version);
    if !dir.is_dir() {
        bail!("no model version {version} in {}", models_dir.display());
    }
    read_version(&dir).with_context(|| format!("version {version} cannot serve"))?;
    write_pointer(models_dir, version)
}

/// Replaces `dir`'s pointer file with one naming `id`: temp file, fsync, rename,
/// fsync the directory.
fn write_pointer(dir: &Path, id: &str) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{SERVING_FILE}.tmp-{}", std::process::id()));
    let result = (|| -> anyhow::Result<()> {
        let mut file =
            File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(format!("{id}\n").as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(SERVING_FILE))
            .with_context(|| format!("cannot replace {SERVING_FILE}"))?;
        File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Versions that do not read: (name, why).
pub type Broken = Vec<(String, String)>;

/// Every version whose manifest reads, oldest first (by name); broken ones are
/// listed in the second vector with why.
pub fn list_versions(models_dir: &Path) -> anyhow::Result<(Vec<Manifest>, Broken)> {
    let mut ok = Vec::new();
    let mut broken = Vec::new();
    let entries = match std::fs::read_dir(models_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((ok, broken)),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", models_dir.display())),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| is_version_name(n))
        .collect();
    names.sort();
    for name in names {
        match read_version(&models_dir.join(&name)) {
            Ok((manifest, _)) => ok.push(manifest),
            Err(e) => broken.push((name, format!("{e:#}"))),
        }
    }
    Ok((ok, broken))
}

/// Fails unless a version of `bytes` could be written under `models_dir` now: a
/// read-only registry, or one without room for it, fails here, before any training
/// time is spent (the probe is written, fsynced and removed).
pub fn check_writable(models_dir: &Path, bytes: u64) -> anyhow::Result<()> {
    let probe = models_dir.join(format!(".probe-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        std::fs::create_dir(&probe)?;
        let mut f = File::create(probe.join("probe"))?;
        let block = [0u8; 64 * 1024];
        let mut left = bytes.max(4096);
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            f.write_all(&block[..n])?;
            left -= n as u64;
        }
        f.sync_all()
    })();
    let _ = std::fs::remove_dir_all(&probe);
    result.with_context(|| {
        format!(
            "the model registry {} is not writable, or has no room for a {} KiB version",
            models_dir.display(),
            bytes.div_ceil(1024)
        )
    })
}

/// Bytes of the files in a version directory (what a version like it will take).
pub fn version_bytes(version_dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(version_dir)
        .with_context(|| format!("cannot list {}", version_dir.display()))?
    {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names() {
        assert!(is_version_name("v0001"));
        assert!(is_version_name("v12"));
        assert!(!is_version_name("v"));
        assert!(!is_version_name("serving"));
        assert!(!is_version_name("v00a1"));
        assert!(!is_version_name("../v0001"));
    }

    #[test]
    fn pointer_rejects_garbage_and_missing_versions() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("empathy-registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        assert_eq!(serving_pointer(&dir)?, None);
        assert!(set_serving(&dir, "v0009").is_err());
        assert!(set_serving(&dir, "../etc").is_err());
        std::fs::write(dir.join(SERVING_FILE), "../../etc/passwd\n")?;
        assert!(serving_pointer(&dir).is_err());
        assert!(
            serving_version(&dir).is_err(),
            "a broken pointer serves nothing"
        );
        // A pointer at a version that is gone (or does not load) fails closed too.
        std::fs::write(dir.join(SERVING_FILE), "v0003\n")?;
        let err = serving_version(&dir).err().map(|e| format!("{e:#}"));
        assert!(
            err.as_deref().is_some_and(|e| e.contains("names v0003")),
            "{err:?}"
        );
        check_writable(&dir, 10_000)?;
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
