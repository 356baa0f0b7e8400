//! The readers `empathy assets fetch` provides, by the name a deployment chooses them.

use std::{fmt, str::FromStr};

/// Which language model reads. Gemma 3 270M is the default; Qwen2.5-Coder-1.5B-Instruct
/// reads implied feelings and tweets better alone (README, "A larger reader") for about
/// eight times the time and six times the memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum ReaderModel {
    #[default]
    Gemma3_270m,
    Qwen25Coder_1_5b,
}

impl ReaderModel {
    pub const ALL: [ReaderModel; 2] = [ReaderModel::Gemma3_270m, ReaderModel::Qwen25Coder_1_5b];

    /// The name a flag takes.
    pub const fn name(self) -> &'static str {
        match self {
            ReaderModel::Gemma3_270m => "gemma-3-270m",
            ReaderModel::Qwen25Coder_1_5b => "qwen2.5-coder-1.5b",
        }
    }

    /// Its name in words, as Info's meaning note gives it.
    pub const fn title(self) -> &'static str {
        match self {
            ReaderModel::Gemma3_270m => "Gemma 3 270M",
            ReaderModel::Qwen25Coder_1_5b => "Qwen2.5-Coder-1.5B-Instruct",
        }
    }

    /// The reader named `name` where a reading was recorded (a feedback record's
    /// `meaning_reader`, a manifest's `corrections_read_by`): the default reader where
    /// it is empty, since records and manifests written before they named their reader
    /// were read by it.
    pub fn recorded(name: &str) -> &str {
        if name.is_empty() {
            ReaderModel::default().name()
        } else {
            name
        }
    }

    /// Its GGUF, under the assets folder.
    pub const fn file(self) -> &'static str {
        match self {
            ReaderModel::Gemma3_270m => "reader/gemma-3-270m-q4_k_m.gguf",
            ReaderModel::Qwen25Coder_1_5b => "reader/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        }
    }
}

impl FromStr for ReaderModel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|m| m.name()).collect();
                format!("reader model {s:?}: expected one of {}", names.join(", "))
            })
    }
}

impl fmt::Display for ReaderModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::ReaderModel;

    #[test]
    fn a_model_is_chosen_by_its_name_and_a_wrong_name_says_which_exist() {
        for model in ReaderModel::ALL {
            assert_eq!(model.name().parse::<ReaderModel>(), Ok(model));
        }
        let err = "qwen".parse::<ReaderModel>().unwrap_err();
        assert!(err.contains("gemma-3-270m, qwen2.5-coder-1.5b"), "{err}");
    }
}
