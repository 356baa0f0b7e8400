//! One f32 matrix product through the `gemm` crate (the kernels under candle, AVX-512 or
//! AVX2/FMA chosen at run time), for the fused ops that address their operands in place.

/// A matrix in memory: where element (0, 0) is and the steps to the next row and column.
#[derive(Clone, Copy)]
pub struct View<P> {
    pub at: P,
    pub row: usize,
    pub col: usize,
}

/// `dst = lhs rhs`, or with `accumulate` `dst += lhs rhs`, for `lhs` (m x k) and `rhs`
/// (k x n).
///
/// # Safety
///
/// Every element the shapes and steps reach must lie inside its allocation, and `dst`'s
/// must be writable and overlap neither operand.
pub unsafe fn multiply(
    (m, k, n): (usize, usize, usize),
    dst: View<*mut f32>,
    accumulate: bool,
    lhs: View<*const f32>,
    rhs: View<*const f32>,
    parallelism: gemm::Parallelism,
) {
    let step = |s: usize| s as isize;
    // SAFETY: the caller's guarantee is gemm's.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.at,
            step(dst.col),
            step(dst.row),
            accumulate,
            lhs.at,
            step(lhs.col),
            step(lhs.row),
            rhs.at,
            step(rhs.col),
            step(rhs.row),
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
