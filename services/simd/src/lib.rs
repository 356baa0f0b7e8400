//! The CPU's wide instructions, chosen at run time (never at build time: the same binary
//! runs on every x86-64 CPU): `widest!` compiles a loop for AVX-512 or AVX2+FMA,
//! `amx` multiplies matrices in bf16 on Intel AMX tiles against weights packed once
//! (`tiles`; `avx512_bf16` on the vector units where a CPU has AVX-512 BF16 but no
//! tiles), and `panels` in f32 with AVX2
//! against a weight packed at load. The text encoder, the meaning reader and the
//! situation generator share them.

use std::str::FromStr;

pub mod amx;
pub mod avx512_bf16;
pub mod fast_math;
pub mod panels;
pub mod tiles;

/// `widest! { fn name(args) => body }` defines `name`, which calls `body(args)` compiled
/// for AVX-512, else AVX2+FMA, else the baseline, whichever the CPU has. `body` should
/// be `#[inline(always)]` so that it is compiled into each build.
#[macro_export]
macro_rules! widest {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) => $body:path) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,fma")]
                fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if is_x86_feature_detected!("avx512bw") {
                    // SAFETY: the CPU has AVX-512F/BW (and so FMA), checked just above.
                    return unsafe { avx512($($arg),*) };
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

/// What a model's dense layers compute in on the CPU (the text encoder's, the meaning
/// reader's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// bf16 inputs with f32 sums where the CPU multiplies bf16 natively (AMX tiles, else
    /// AVX-512 BF16), which keeps every embedding within cosine 0.999 of f32; f32
    /// elsewhere.
    #[default]
    Auto,
    /// f32 throughout, on every CPU.
    F32,
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "f32" => Ok(Self::F32),
            other => Err(format!("precision {other:?}: expected auto or f32")),
        }
    }
}

impl Precision {
    /// Whether the dense layers will run in bf16 on this machine.
    pub fn uses_bf16(self) -> bool {
        self.bf16_unit().is_some()
    }

    /// What multiplies in bf16 on this machine, in words ("AMX tiles", "AVX-512
    /// BF16"); None where the dense layers run in f32.
    pub fn bf16_unit(self) -> Option<&'static str> {
        if self != Self::Auto {
            None
        } else if amx::available() {
            Some("AMX tiles")
        } else if avx512_bf16::available() {
            Some("AVX-512 BF16")
        } else {
            None
        }
    }
}
