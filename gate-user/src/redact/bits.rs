//! Byte classes as bit masks, 64 bytes at a time, with the widest vector unit the CPU has
//! (AVX-512BW, AVX2, or portable code the compiler vectorises with SSE2): the run finders of
//! the decoding layers ([`super::view`]) look at every byte of every body, and these masks
//! are the part of their work that grows with the body.
//!
//! Each run finder is written once, generic over its mask function, and compiled once per
//! level with that level's masks inlined; `at_level` picks the version the CPU runs. The
//! tests compare every level this CPU has with the portable one.
use std::ops::Range;

/// Bit `j` set where byte `j` of a 64-byte word is in either base64 alphabet
/// (`A-Z a-z 0-9 + / - _`).
pub type Base64Mask = fn(&[u8; 64]) -> u64;

/// Bits set where byte `j` of a 64-byte word is a backslash, and where it is `u` or `/` (the
/// bytes after a backslash that make a JSON escape worth decoding).
pub type JsonMasks = fn(&[u8; 64]) -> (u64, u64);

/// The vector unit a call runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Level {
    /// The widest level this CPU runs (std caches the feature checks).
    #[inline]
    pub fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if Level::Avx512.available() {
                return Level::Avx512;
            }
            if Level::Avx2.available() {
                return Level::Avx2;
            }
        }
        Level::Portable
    }

    /// Whether this CPU has the features `self` is compiled for.
    #[inline]
    pub fn available(self) -> bool {
        match self {
            Level::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => std::arch::is_x86_feature_detected!("avx512bw"),
        }
    }

    /// Every level this CPU runs, the portable one first.
    pub fn all_available() -> Vec<Self> {
        let all = [
            Level::Portable,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2,
            #[cfg(target_arch = "x86_64")]
            Level::Avx512,
        ];
        all.into_iter().filter(|l| l.available()).collect()
    }
}

/// One run finder compiled at every level. The vector versions are `unsafe fn` pointers only
/// because a `#[target_feature]` function becomes one: they are safe code, safe to call on a
/// CPU with their features.
struct Versions<A, T> {
    portable: fn(A) -> T,
    #[cfg(target_arch = "x86_64")]
    avx2: unsafe fn(A) -> T,
    #[cfg(target_arch = "x86_64")]
    avx512: unsafe fn(A) -> T,
}

/// Calls the version of `v` for `level`, or the portable one when the CPU lacks `level`.
#[inline]
fn at_level<A, T>(level: Level, v: &Versions<A, T>, arg: A) -> T {
    let f: unsafe fn(A) -> T = match level {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 if level.available() => v.avx512,
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 if level.available() => v.avx2,
        _ => v.portable,
    };
    // SAFETY: `f` is the portable version, or one from the `x86` module of `level`'s name
    // (`x86::avx2` for `Level::Avx2`, `x86::avx512` for `Level::Avx512`: every function
    // there is compiled with that level's target features) and this CPU has them (checked
    // just above). Nothing else about those functions is unsafe.
    unsafe { f(arg) }
}

/// Maximal base64 runs of useful length, as [`super::view::base64_runs`] defines them.
pub fn base64_runs(level: Level, raw: &[u8]) -> Vec<Range<usize>> {
    let v = Versions {
        portable: |raw| super::view::base64_runs_by(raw, portable::base64),
        #[cfg(target_arch = "x86_64")]
        avx2: x86::avx2::base64_runs,
        #[cfg(target_arch = "x86_64")]
        avx512: x86::avx512::base64_runs,
    };
    at_level(level, &v, raw)
}

/// Runs holding a JSON escape worth decoding, as [`super::view::json_runs`] defines them.
pub fn json_runs(level: Level, raw: &[u8]) -> Vec<Range<usize>> {
    let v = Versions {
        portable: |raw| super::view::json_runs_by(raw, portable::json),
        #[cfg(target_arch = "x86_64")]
        avx2: x86::avx2::json_runs,
        #[cfg(target_arch = "x86_64")]
        avx512: x86::avx512::json_runs,
    };
    at_level(level, &v, raw)
}

/// Masks for any CPU.
pub mod portable {
    /// [`super::Base64Mask`]: branch-free comparisons (vector code), then eight flags at a
    /// time packed into a byte with one multiplication.
    #[inline(always)]
    pub fn base64(word: &[u8; 64]) -> u64 {
        let mut flags = [0u8; 64];
        for (f, &b) in flags.iter_mut().zip(word) {
            let letter = (b | 0x20).wrapping_sub(b'a') < 26;
            let digit = b.wrapping_sub(b'0') < 10;
            let sym = (b == b'+') | (b == b'/') | (b == b'-') | (b == b'_');
            *f = u8::from(letter | digit | sym);
        }
        pack(&flags)
    }

    /// [`super::JsonMasks`], packed as [`base64`] packs.
    #[inline(always)]
    pub fn json(word: &[u8; 64]) -> (u64, u64) {
        let mut slash = [0u8; 64];
        let mut after = [0u8; 64];
        for ((s, a), &b) in slash.iter_mut().zip(&mut after).zip(word) {
            *s = u8::from(b == b'\\');
            *a = u8::from((b == b'u') | (b == b'/'));
        }
        (pack(&slash), pack(&after))
    }

    /// One bit per flag byte (each 0 or 1).
    #[inline(always)]
    fn pack(flags: &[u8; 64]) -> u64 {
        let mut m = 0u64;
        for (k, eight) in flags.chunks_exact(8).enumerate() {
            let v = u64::from_le_bytes(eight.try_into().unwrap_or_default());
            // Each byte of v is 0 or 1: the product gathers byte i's bit at bit 56 + i.
            m |= (v.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * k);
        }
        m
    }
}

/// Masks and run finders for x86-64, one module per level: every function in a module is
/// compiled with that module's target features and no others.
#[cfg(target_arch = "x86_64")]
mod x86 {
    /// The eight little-endian lanes of a word (the compiler makes it one load).
    #[inline(always)]
    fn lanes(word: &[u8; 64]) -> [i64; 8] {
        let mut q = [0i64; 8];
        for (q, eight) in q.iter_mut().zip(word.chunks_exact(8)) {
            *q = i64::from_le_bytes(eight.try_into().unwrap_or_default());
        }
        q
    }

    pub mod avx2 {
        use std::arch::x86_64::*;
        use std::ops::Range;

        use crate::redact::view::{base64_runs_by, json_runs_by};

        #[inline]
        #[target_feature(enable = "avx2")]
        fn load(word: &[u8; 64], half: usize) -> __m256i {
            let q = super::lanes(word);
            let q = &q[4 * half..4 * half + 4];
            _mm256_set_epi64x(q[3], q[2], q[1], q[0])
        }

        /// Bytes `32 * half..` of a mask, from a vector of 0 or 0xff bytes.
        #[inline]
        #[target_feature(enable = "avx2")]
        fn bits(flags: __m256i, half: usize) -> u64 {
            u64::from(_mm256_movemask_epi8(flags).cast_unsigned()) << (32 * half)
        }

        /// [`super::super::Base64Mask`]: two halves of 32 bytes, each packed with movemask.
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn base64(word: &[u8; 64]) -> u64 {
            let half = |h: usize| {
                let v = load(word, h);
                let splat = |c: u8| _mm256_set1_epi8(c as i8);
                // Unsigned x < n exactly when min(x, n - 1) == x.
                let below =
                    |x: __m256i, n: u8| _mm256_cmpeq_epi8(_mm256_min_epu8(x, splat(n - 1)), x);
                let lower = _mm256_or_si256(v, splat(0x20));
                let letter = below(_mm256_sub_epi8(lower, splat(b'a')), 26);
                let digit = below(_mm256_sub_epi8(v, splat(b'0')), 10);
                let eq = |c: u8| _mm256_cmpeq_epi8(v, splat(c));
                let sym = _mm256_or_si256(
                    _mm256_or_si256(eq(b'+'), eq(b'/')),
                    _mm256_or_si256(eq(b'-'), eq(b'_')),
                );
                bits(_mm256_or_si256(_mm256_or_si256(letter, digit), sym), h)
            };
            // Opaque to the optimiser: seen through, the mask becomes a vector of 64 flags
            // that the run finder's shifts take apart bit by bit (AVX2 has no mask
            // registers), which made this slower than the portable code.
            std::hint::black_box(half(0) | half(1))
        }

        /// [`super::super::JsonMasks`].
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn json(word: &[u8; 64]) -> (u64, u64) {
            let half = |h: usize| {
                let v = load(word, h);
                let eq = |c: u8| _mm256_cmpeq_epi8(v, _mm256_set1_epi8(c as i8));
                (
                    bits(eq(b'\\'), h),
                    bits(_mm256_or_si256(eq(b'u'), eq(b'/')), h),
                )
            };
            let ((s0, a0), (s1, a1)) = (half(0), half(1));
            (s0 | s1, a0 | a1)
        }

        #[target_feature(enable = "avx2")]
        pub fn base64_runs(raw: &[u8]) -> Vec<Range<usize>> {
            base64_runs_by(raw, |w| base64(w))
        }

        #[target_feature(enable = "avx2")]
        pub fn json_runs(raw: &[u8]) -> Vec<Range<usize>> {
            json_runs_by(raw, |w| json(w))
        }
    }

    /// The AVX-512 intrinsics are stable from Rust 1.89 (the workspace says 1.87; its let
    /// chains already need 1.88).
    #[clippy::msrv = "1.89"]
    pub mod avx512 {
        use std::arch::x86_64::*;
        use std::ops::Range;

        use crate::redact::view::{base64_runs_by, json_runs_by};

        #[inline]
        #[target_feature(enable = "avx512bw")]
        fn load(word: &[u8; 64]) -> __m512i {
            let q = super::lanes(word);
            _mm512_set_epi64(q[7], q[6], q[5], q[4], q[3], q[2], q[1], q[0])
        }

        /// [`super::super::Base64Mask`]: one comparison mask per class, no packing.
        #[inline]
        #[target_feature(enable = "avx512bw")]
        pub fn base64(word: &[u8; 64]) -> u64 {
            let v = load(word);
            let splat = |c: u8| _mm512_set1_epi8(c as i8);
            let lower = _mm512_or_si512(v, splat(0x20));
            let letter = _mm512_cmplt_epu8_mask(_mm512_sub_epi8(lower, splat(b'a')), splat(26));
            let digit = _mm512_cmplt_epu8_mask(_mm512_sub_epi8(v, splat(b'0')), splat(10));
            let eq = |c: u8| _mm512_cmpeq_epi8_mask(v, splat(c));
            letter | digit | eq(b'+') | eq(b'/') | eq(b'-') | eq(b'_')
        }

        /// [`super::super::JsonMasks`].
        #[inline]
        #[target_feature(enable = "avx512bw")]
        pub fn json(word: &[u8; 64]) -> (u64, u64) {
            let v = load(word);
            let eq = |c: u8| _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(c as i8));
            (eq(b'\\'), eq(b'u') | eq(b'/'))
        }

        #[target_feature(enable = "avx512bw")]
        pub fn base64_runs(raw: &[u8]) -> Vec<Range<usize>> {
            base64_runs_by(raw, |w| base64(w))
        }

        #[target_feature(enable = "avx512bw")]
        pub fn json_runs(raw: &[u8]) -> Vec<Range<usize>> {
            json_runs_by(raw, |w| json(w))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words of every byte value at every position, and random ones.
    fn words() -> Vec<[u8; 64]> {
        let mut out = Vec::new();
        for b in 0..=255u8 {
            out.push([b; 64]);
            let mut w = [b'A'; 64];
            for (j, x) in w.iter_mut().enumerate() {
                if j % 3 == usize::from(b) % 3 {
                    *x = b;
                }
            }
            out.push(w);
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut w = [0u8; 64];
            for x in &mut w {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *x = (state >> 24) as u8;
            }
            out.push(w);
        }
        out
    }

    fn reference_base64(word: &[u8; 64]) -> u64 {
        let mut m = 0;
        for (j, &b) in word.iter().enumerate() {
            if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_') {
                m |= 1 << j;
            }
        }
        m
    }

    fn base64_mask(level: Level, word: &[u8; 64]) -> u64 {
        let v = Versions {
            portable: |w| portable::base64(w),
            #[cfg(target_arch = "x86_64")]
            avx2: x86::avx2::base64,
            #[cfg(target_arch = "x86_64")]
            avx512: x86::avx512::base64,
        };
        at_level(level, &v, word)
    }

    fn json_masks(level: Level, word: &[u8; 64]) -> (u64, u64) {
        let v = Versions {
            portable: |w| portable::json(w),
            #[cfg(target_arch = "x86_64")]
            avx2: x86::avx2::json,
            #[cfg(target_arch = "x86_64")]
            avx512: x86::avx512::json,
        };
        at_level(level, &v, word)
    }

    #[test]
    fn every_levels_json_masks_are_the_bytewise_ones() {
        for w in words() {
            let (mut slash, mut after) = (0u64, 0u64);
            for (j, &b) in w.iter().enumerate() {
                slash |= u64::from(b == b'\\') << j;
                after |= u64::from(b == b'u' || b == b'/') << j;
            }
            for level in Level::all_available() {
                assert_eq!(json_masks(level, &w), (slash, after), "{level:?} {w:?}");
            }
        }
    }

    #[test]
    fn every_levels_base64_mask_is_the_bytewise_one() {
        let levels = Level::all_available();
        assert!(
            !cfg!(target_arch = "x86_64") || levels.len() > 1,
            "{levels:?}"
        );
        for w in words() {
            let want = reference_base64(&w);
            for &level in &levels {
                assert_eq!(base64_mask(level, &w), want, "{level:?} {w:?}");
            }
        }
    }
}
