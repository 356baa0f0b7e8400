//! The sha256 allow-list: loading a library runs its code, so an operator may pin
//! exactly which files the encoder is permitted to open.

use std::collections::HashSet;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::LoadError;

/// The sha256 digests of the plugin files that may be loaded. An empty list allows
/// nothing; pass no list at all to allow any file.
#[derive(Debug, Clone)]
pub struct AllowList {
    digests: HashSet<[u8; 32]>,
}

impl AllowList {
    /// Parses hex digests (either case, surrounding whitespace ignored), as printed
    /// by `sha256sum`.
    pub fn from_hex<I: IntoIterator<Item = S>, S: AsRef<str>>(
        digests: I,
    ) -> Result<Self, LoadError> {
        let digests = digests
            .into_iter()
            .map(|digest| {
                let digest = digest.as_ref().trim();
                let mut bytes = [0_u8; 32];
                hex::decode_to_slice(digest, &mut bytes).map_err(|e| LoadError::BadDigest {
                    digest: digest.to_owned(),
                    reason: e.to_string(),
                })?;
                Ok(bytes)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { digests })
    }

    pub(crate) fn allows(&self, digest: &[u8; 32]) -> bool {
        self.digests.contains(digest)
    }
}

/// A file's sha256 as lowercase hex, as an allow-list takes it (for a launcher that
/// pins the plugins it starts an encoder with).
pub fn sha256_hex(path: &Path) -> io::Result<String> {
    sha256_file(path).map(hex::encode)
}

/// Hashes a file in a streaming fashion: plugin libraries can be hundreds of MB.
pub(crate) fn sha256_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_either_case_and_allows_only_listed_digests() -> Result<(), LoadError> {
        let list = AllowList::from_hex([format!(" {} ", EMPTY_SHA256.to_uppercase())])?;
        let file = std::env::temp_dir().join(format!("empathy-allow-{}", std::process::id()));
        std::fs::write(&file, b"").map_err(|error| LoadError::Read {
            path: file.clone(),
            error,
        })?;
        let digest = sha256_file(&file).map_err(|error| LoadError::Read {
            path: file.clone(),
            error,
        })?;
        let _ = std::fs::remove_file(&file);
        assert!(list.allows(&digest));
        assert!(!list.allows(&[0; 32]));
        Ok(())
    }

    #[test]
    fn rejects_malformed_digests_naming_them() {
        for bad in ["abc", &"zz".repeat(32), &"00".repeat(33)] {
            let err = AllowList::from_hex([bad]).expect_err("a malformed digest must be refused");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
