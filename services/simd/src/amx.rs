//! Matrix products in bf16 on Intel AMX tiles (Sapphire Rapids and later), for the dense
//! layers. One `tdpbf16ps` multiplies a 16x32 by a 32x16 tile (8,192 multiply-adds,
//! accumulated in f32); the AVX-512 FMA units do 32 a cycle. At batch sizes where the
//! f32 GEMM is compute-bound this is the difference between matching PyTorch and beating
//! it. Inputs are rounded to bf16 (8 bits of mantissa), sums stay f32; the embeddings stay
//! within cosine 0.999 of the f32 reference (tests/reference.rs checks it).
//!
//! The weights come packed as the tiles read them (`tiles::Packed`); where a CPU has no
//! AMX but AVX-512 BF16, `multiply` runs the same products there (`avx512_bf16`).
//!
//! Rust's AMX intrinsics are unstable, so the tile instructions are inline assembly. No
//! other code in the process touches the tile registers, which is why state may live in
//! them between `asm!` blocks.

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::{
    avx512_bf16,
    tiles::{COLS, DEPTH, Packed, to_bf16},
};

/// Whether this CPU has AMX-BF16 and Linux let this process use the tile registers.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(detect)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> bool {
    // CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE.
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    if leaf7.edx & (1 << 22) == 0 || leaf7.edx & (1 << 24) == 0 {
        return false;
    }
    // Linux gives the 8 KiB of tile state only to a process that asks (5.16 and later);
    // a hypervisor that hides it refuses here.
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: this arch_prctl only extends the process's permitted register state.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}

/// Whether [`multiply`] runs on this CPU: on AMX tiles, else with AVX-512 BF16
/// (`avx512_bf16`), the same bf16 products on the vector units.
pub fn can_multiply() -> bool {
    available() || avx512_bf16::available()
}

/// Rows of x (and of the output) one task multiplies: two tiles of 16.
pub const ROWS: usize = 32;

/// `x W` for `x` of (rows, k), row-major: (rows, n), on every compute thread. Only call
/// where [`can_multiply`] holds.
pub fn multiply(x: &[f32], rows: usize, w: &Packed) -> Vec<f32> {
    let n = w.shape().1;
    let mut y = vec![0f32; rows.next_multiple_of(ROWS) * n];
    multiply_add(&mut y, x, rows, w, rayon::current_num_threads());
    y.truncate(rows * n);
    y
}

/// `y += x W`: `x` is (rows, k), `y` is (rows rounded up to 32, n), both row-major; the
/// rows past `rows` are scratch. Only call where [`can_multiply`] holds (it panics
/// elsewhere).
pub fn multiply_add(y: &mut [f32], x: &[f32], rows: usize, w: &Packed, threads: usize) {
    assert!(can_multiply(), "bf16 products need AMX or AVX-512 BF16");
    // SAFETY: the CPU has AMX where `available()`, else AVX-512 BF16 (asserted above).
    unsafe { multiply_add_on(available(), y, x, rows, w, threads) };
}

/// `multiply_add` on the tiles (`tiles`) or on AVX-512 BF16.
///
/// # Safety
///
/// The CPU has the kernel `tiles` names: AMX ([`available`]) if true, else AVX-512 BF16
/// (`avx512_bf16::available`).
unsafe fn multiply_add_on(
    tiles: bool,
    y: &mut [f32],
    x: &[f32],
    rows: usize,
    w: &Packed,
    threads: usize,
) {
    let (k, n) = w.shape();
    let row_blocks = rows.div_ceil(ROWS);
    assert!(x.len() == rows * k && y.len() == row_blocks * ROWS * n);
    if rows == 0 {
        return;
    }
    let pairs = n / (2 * COLS);
    // Few rows (one sentence): split the columns too, so every thread has work.
    let groups = (2 * threads).div_ceil(row_blocks).clamp(1, pairs);
    let out = SharedOut(y.as_mut_ptr());
    (0..row_blocks * groups).into_par_iter().for_each(|task| {
        let (block, group) = (task / groups, task % groups);
        let first = block * ROWS;
        let last = (first + ROWS).min(rows);
        let mut a = vec![0u16; ROWS * k];
        to_bf16(&x[first * k..last * k], &mut a[..(last - first) * k]);
        let pairs = group * pairs / groups..(group + 1) * pairs / groups;
        // SAFETY: the caller promised the kernel `tiles` names (the tile instructions
        // exist and the process may use them, else AVX-512 BF16 does); a (32, k) bf16,
        // the packed tiles and y's 32 rows from `first` hold every element the loads
        // and stores reach; tasks write disjoint (row block, column) ranges of y.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            if tiles {
                block_product(out.at(first * n), n, &a, k, w, pairs)
            } else {
                // Only the block's real rows: the vector kernel pays for each.
                let a = (a.as_slice(), last - first);
                avx512_bf16::block_product(out.at(first * n), n, a, k, w, pairs)
            }
        };
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (out, pairs, tiles);
            unreachable!("AMX and AVX-512 are x86-64 only, so can_multiply() is false here");
        }
    });
}

/// y's base pointer, shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint regions (see multiply_add).
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// The tile shapes: tiles 0-3 accumulate a 32x32 block of y in f32 (16 rows of 64 bytes
/// each), 4-5 hold 16 rows x 32 inputs of x, 6-7 two B tiles.
#[cfg(target_arch = "x86_64")]
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

#[cfg(target_arch = "x86_64")]
const CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    bytes_per_row: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

#[cfg(target_arch = "x86_64")]
macro_rules! load {
    ($tile:literal, $at:expr, $stride:expr) => {
        std::arch::asm!(
            concat!("tileloadd tmm", $tile, ", [{at} + {stride}*1]"),
            at = in(reg) $at,
            stride = in(reg) $stride,
            options(nostack, readonly),
        )
    };
}

#[cfg(target_arch = "x86_64")]
macro_rules! store {
    ($tile:literal, $at:expr, $stride:expr) => {
        std::arch::asm!(
            concat!("tilestored [{at} + {stride}*1], tmm", $tile),
            at = in(reg) $at,
            stride = in(reg) $stride,
            options(nostack),
        )
    };
}

#[cfg(target_arch = "x86_64")]
macro_rules! dot {
    ($acc:literal, $a:literal, $b:literal) => {
        std::arch::asm!(
            concat!("tdpbf16ps tmm", $acc, ", tmm", $a, ", tmm", $b),
            options(nostack, nomem),
        )
    };
}

/// y[0..32, cols of `pairs`] += a w, with `y` at the block's first row (row step `n`
/// floats) and `a` the block's 32 rows of x in bf16 (row step `k`).
///
/// # Safety
///
/// AMX must be [`available`]; `y` must reach 32 rows of `n` floats.
#[cfg(target_arch = "x86_64")]
unsafe fn block_product(
    y: *mut f32,
    n: usize,
    a: &[u16],
    k: usize,
    w: &Packed,
    pairs: std::ops::Range<usize>,
) {
    let y_stride = n * 4;
    let a_stride = k * 2;
    let a_low = a.as_ptr();
    let a_high = a[16 * k..].as_ptr();
    // SAFETY: the caller guarantees AMX and y's extent; a holds 32 rows of k, each packed
    // tile 16 rows of 64 bytes, and every offset below stays inside those.
    unsafe {
        std::arch::asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly));
        for pair in pairs {
            let (left, right) = (2 * pair, 2 * pair + 1);
            let y_low = y.add(left * COLS);
            let y_high = y_low.add(16 * n);
            load!("0", y_low, y_stride);
            load!("1", y_low.add(COLS), y_stride);
            load!("2", y_high, y_stride);
            load!("3", y_high.add(COLS), y_stride);
            for depth in 0..k / DEPTH {
                load!("4", a_low.add(depth * DEPTH), a_stride);
                load!("5", a_high.add(depth * DEPTH), a_stride);
                load!("6", w.tile(left, depth), 64usize);
                load!("7", w.tile(right, depth), 64usize);
                dot!("0", "4", "6");
                dot!("1", "4", "7");
                dot!("2", "5", "6");
                dot!("3", "5", "7");
            }
            store!("0", y_low, y_stride);
            store!("1", y_low.add(COLS), y_stride);
            store!("2", y_high, y_stride);
            store!("3", y_high.add(COLS), y_stride);
        }
        std::arch::asm!("tilerelease", options(nostack, nomem));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiles::bf16;

    /// Against the f32 product of the same bf16-rounded inputs, so the only difference
    /// left is the order of summation.
    #[test]
    fn matches_the_f32_product() {
        let kernels = [(true, available()), (false, avx512_bf16::available())];
        let kernels: Vec<bool> = kernels.iter().filter(|k| k.1).map(|k| k.0).collect();
        if kernels.is_empty() {
            eprintln!("skipped: neither AMX nor AVX-512 BF16 on this CPU");
            return;
        }
        // Two row blocks, the second in passes of 6, 6 and 1 on the vector units;
        // inputs past one of their pieces (256).
        for (rows, k, n) in [(45, 64, 96), (7, 320, 64)] {
            let value = |i: usize| ((i * 7919) % 201) as f32 / 100.0 - 1.0;
            let x: Vec<f32> = (0..rows * k).map(|i| value(i + 3)).collect();
            let w: Vec<f32> = (0..k * n).map(|i| value(i * 13 + 1)).collect();
            let round = |v: f32| f32::from_bits(u32::from(bf16(v)) << 16);
            for &tiles in &kernels {
                let mut y = vec![0.5f32; rows.div_ceil(ROWS) * ROWS * n];
                // SAFETY: only the kernels this CPU has (filtered above).
                unsafe { multiply_add_on(tiles, &mut y, &x, rows, &Packed::new(&w, k, n), 2) };
                for r in 0..rows {
                    for c in 0..n {
                        let want: f32 = 0.5
                            + (0..k)
                                .map(|i| round(x[r * k + i]) * round(w[i * n + c]))
                                .sum::<f32>();
                        let got = y[r * n + c];
                        assert!(
                            (got - want).abs() < 1e-3,
                            "tiles {tiles}, {rows}x{k}x{n} ({r}, {c}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
