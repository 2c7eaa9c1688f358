//! Run-time dispatch of vectorisable loops to AVX2.

/// Defines `fn` so that, on x86-64 CPUs with AVX2, its body runs compiled
/// for AVX2 (chosen at run time, once per call). For kernels written as
/// plain loops over slices that the compiler vectorises: 8 lanes wide there
/// instead of the 4 of the x86-64 baseline the crates are built for. The
/// same arithmetic in the same order either way (no fused multiply-adds),
/// so the values are equal on every CPU.
///
/// ```
/// cssl_core::vectorised! {
///     /// `x * a` for every value.
///     pub fn scale(x: &mut [f32], a: f32) {
///         x.iter_mut().for_each(|v| *v *= a);
///     }
/// }
/// let mut x = [1.0, 2.0];
/// scale(&mut x, 3.0);
/// assert_eq!(x, [3.0, 6.0]);
/// ```
#[macro_export]
macro_rules! vectorised {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
