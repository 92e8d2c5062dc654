//! Byte classes as bit masks, 64 bytes at a time, with the widest vector unit the CPU has
//! (AVX-512BW, AVX2, or portable code the compiler vectorises with SSE2): the run finders of
//! the decoding layers ([`super::view`]) look at every byte of every body, and these masks
//! are the part of their work that grows with the body.
//!
//! Each run finder is written once, generic over a `Masks` type, and compiled once per
//! level with that level's masks inlined, inside `pulp`'s runtime dispatch (its x86-64-v3 and
//! -v4 tokens prove the CPU has the features, and its safe wrappers of the intrinsics take
//! them), so this module needs no `unsafe`. The tests compare every level this CPU has with
//! the portable one.
use std::ops::Range;

/// Bit `j` set where byte `j` of a 64-byte word is in either base64 alphabet
/// (`A-Z a-z 0-9 + / - _`).
pub type Base64Mask = fn(&[u8; 64]) -> u64;

/// Bits set where byte `j` of a 64-byte word is a backslash, and where it is `u` or `/` (the
/// bytes after a backslash that make a JSON escape worth decoding).
pub type JsonMasks = fn(&[u8; 64]) -> (u64, u64);

/// The vector unit a call runs on: `Avx2` needs x86-64-v3 (AVX2, FMA, BMI), `Avx512`
/// x86-64-v4 (AVX-512 F, BW, CD, DQ, VL), as `pulp`'s tokens check them.
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
            Level::Avx2 => pulp::x86::V3::is_available(),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => pulp::x86::V4::is_available(),
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

/// A level's masks, as the run finders in [`super::view`] take them: a token type per level
/// whose methods are always inlined, so that inside `pulp`'s `vectorize` the whole finder is
/// compiled for the level's features.
pub(super) trait Masks: Copy {
    /// Bit `j` set where byte `j` of `word` is in either base64 alphabet.
    fn base64(self, word: &[u8; 64]) -> u64;
    /// Bits set where byte `j` is a backslash, and where it is `u` or `/`.
    fn json(self, word: &[u8; 64]) -> (u64, u64);
}

/// The portable masks.
#[derive(Debug, Clone, Copy)]
struct Portable;

impl Masks for Portable {
    #[inline(always)]
    fn base64(self, word: &[u8; 64]) -> u64 {
        portable::base64(word)
    }
    #[inline(always)]
    fn json(self, word: &[u8; 64]) -> (u64, u64) {
        portable::json(word)
    }
}

#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
struct Avx2(pulp::x86::V3);

#[cfg(target_arch = "x86_64")]
impl Masks for Avx2 {
    #[inline(always)]
    fn base64(self, word: &[u8; 64]) -> u64 {
        x86::avx2::base64(self.0, word)
    }
    #[inline(always)]
    fn json(self, word: &[u8; 64]) -> (u64, u64) {
        x86::avx2::json(self.0, word)
    }
}

#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
struct Avx512(pulp::x86::V4);

#[cfg(target_arch = "x86_64")]
impl Masks for Avx512 {
    #[inline(always)]
    fn base64(self, word: &[u8; 64]) -> u64 {
        x86::avx512::base64(self.0, word)
    }
    #[inline(always)]
    fn json(self, word: &[u8; 64]) -> (u64, u64) {
        x86::avx512::json(self.0, word)
    }
}

/// Runs `finder` with the widest masks `level` names that this CPU has, compiled for them
/// (`pulp`'s `vectorize` turns the features on for the code it inlines).
#[inline(always)]
fn with_masks<T>(level: Level, finder: impl MaskFinder<T>) -> T {
    match level {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => {
            if let Some(simd) = pulp::x86::V4::try_new() {
                return simd.vectorize(|| finder.run(Avx512(simd)));
            }
        }
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => {
            if let Some(simd) = pulp::x86::V3::try_new() {
                return simd.vectorize(|| finder.run(Avx2(simd)));
            }
        }
        _ => {}
    }
    finder.run(Portable)
}

/// Work done with one level's masks (generic over them, so each level gets its own copy).
trait MaskFinder<T> {
    fn run(self, masks: impl Masks) -> T;
}

/// The base64 run finder.
struct Base64Runs<'a>(&'a [u8]);

impl MaskFinder<Vec<Range<usize>>> for Base64Runs<'_> {
    #[inline(always)]
    fn run(self, masks: impl Masks) -> Vec<Range<usize>> {
        super::view::base64_runs_by(self.0, masks)
    }
}

/// The JSON escape run finder.
struct JsonRuns<'a>(&'a [u8]);

impl MaskFinder<Vec<Range<usize>>> for JsonRuns<'_> {
    #[inline(always)]
    fn run(self, masks: impl Masks) -> Vec<Range<usize>> {
        super::view::json_runs_by(self.0, masks)
    }
}

/// Maximal base64 runs of useful length, as [`super::view::base64_runs`] defines them.
pub fn base64_runs(level: Level, raw: &[u8]) -> Vec<Range<usize>> {
    with_masks(level, Base64Runs(raw))
}

/// Runs holding a JSON escape worth decoding, as `view::json_runs` defines them.
pub fn json_runs(level: Level, raw: &[u8]) -> Vec<Range<usize>> {
    with_masks(level, JsonRuns(raw))
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

    /// [`super::JsonMasks`], packed as `base64` packs.
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
    /// A 64-byte word as eight little-endian 64-bit lanes (the compiler makes one load of it).
    #[inline(always)]
    fn lanes(word: &[u8; 64]) -> [i64; 8] {
        let mut q = [0i64; 8];
        for (q, eight) in q.iter_mut().zip(word.chunks_exact(8)) {
            *q = i64::from_le_bytes(eight.try_into().unwrap_or_default());
        }
        q
    }

    pub mod avx2 {
        use pulp::x86::V3;
        use std::arch::x86_64::__m256i;

        #[inline(always)]
        fn load(simd: V3, word: &[u8; 64], half: usize) -> __m256i {
            let q = super::lanes(word);
            let q = &q[4 * half..4 * half + 4];
            simd.avx._mm256_set_epi64x(q[3], q[2], q[1], q[0])
        }

        #[inline(always)]
        fn bits(simd: V3, flags: __m256i, half: usize) -> u64 {
            u64::from(simd.avx2._mm256_movemask_epi8(flags).cast_unsigned()) << (32 * half)
        }

        #[inline(always)]
        fn splat(simd: V3, c: u8) -> __m256i {
            simd.avx._mm256_set1_epi8(c as i8)
        }

        /// 0xff where byte `x` is below `n` (unsigned: min(x, n - 1) == x).
        #[inline(always)]
        fn below(simd: V3, x: __m256i, n: u8) -> __m256i {
            let avx2 = simd.avx2;
            avx2._mm256_cmpeq_epi8(avx2._mm256_min_epu8(x, splat(simd, n - 1)), x)
        }

        #[inline(always)]
        fn eq(simd: V3, v: __m256i, c: u8) -> __m256i {
            simd.avx2._mm256_cmpeq_epi8(v, splat(simd, c))
        }

        // No closures here: a closure is a function of its own, compiled without the
        // features unless inlined, and the intrinsics in it would then be calls.
        #[inline(always)]
        fn base64_half(simd: V3, word: &[u8; 64], h: usize) -> u64 {
            let avx2 = simd.avx2;
            let v = load(simd, word, h);
            let lower = avx2._mm256_or_si256(v, splat(simd, 0x20));
            let letter = below(simd, avx2._mm256_sub_epi8(lower, splat(simd, b'a')), 26);
            let digit = below(simd, avx2._mm256_sub_epi8(v, splat(simd, b'0')), 10);
            let sym = avx2._mm256_or_si256(
                avx2._mm256_or_si256(eq(simd, v, b'+'), eq(simd, v, b'/')),
                avx2._mm256_or_si256(eq(simd, v, b'-'), eq(simd, v, b'_')),
            );
            bits(
                simd,
                avx2._mm256_or_si256(avx2._mm256_or_si256(letter, digit), sym),
                h,
            )
        }

        /// [`super::super::Base64Mask`] on AVX2.
        #[inline(always)]
        pub fn base64(simd: V3, word: &[u8; 64]) -> u64 {
            // Opaque to the optimiser: seen through, the mask becomes a vector of 64 flags
            // that the run finder's shifts take apart bit by bit (AVX2 has no mask
            // registers), which made this slower than the portable code.
            std::hint::black_box(base64_half(simd, word, 0) | base64_half(simd, word, 1))
        }

        #[inline(always)]
        fn json_half(simd: V3, word: &[u8; 64], h: usize) -> (u64, u64) {
            let v = load(simd, word, h);
            (
                bits(simd, eq(simd, v, b'\\'), h),
                bits(
                    simd,
                    simd.avx2
                        ._mm256_or_si256(eq(simd, v, b'u'), eq(simd, v, b'/')),
                    h,
                ),
            )
        }

        /// [`super::super::JsonMasks`] on AVX2.
        #[inline(always)]
        pub fn json(simd: V3, word: &[u8; 64]) -> (u64, u64) {
            let ((s0, a0), (s1, a1)) = (json_half(simd, word, 0), json_half(simd, word, 1));
            // Opaque for the reason given in `base64`.
            std::hint::black_box((s0 | s1, a0 | a1))
        }
    }

    pub mod avx512 {
        use pulp::x86::V4;
        use std::arch::x86_64::__m512i;

        #[inline(always)]
        fn load(simd: V4, word: &[u8; 64]) -> __m512i {
            let q = super::lanes(word);
            simd.avx512f
                ._mm512_set_epi64(q[7], q[6], q[5], q[4], q[3], q[2], q[1], q[0])
        }

        #[inline(always)]
        fn splat(simd: V4, c: u8) -> __m512i {
            simd.avx512f._mm512_set1_epi8(c as i8)
        }

        #[inline(always)]
        fn eq(simd: V4, v: __m512i, c: u8) -> u64 {
            simd.avx512bw._mm512_cmpeq_epi8_mask(v, splat(simd, c))
        }

        /// [`super::super::Base64Mask`] on AVX-512BW: one comparison mask per class, no
        /// packing (and no closures, see the AVX2 versions).
        #[inline(always)]
        pub fn base64(simd: V4, word: &[u8; 64]) -> u64 {
            let (f, bw) = (simd.avx512f, simd.avx512bw);
            let v = load(simd, word);
            let lower = f._mm512_or_si512(v, splat(simd, 0x20));
            let letter = bw._mm512_cmplt_epu8_mask(
                bw._mm512_sub_epi8(lower, splat(simd, b'a')),
                splat(simd, 26),
            );
            let digit = bw
                ._mm512_cmplt_epu8_mask(bw._mm512_sub_epi8(v, splat(simd, b'0')), splat(simd, 10));
            letter
                | digit
                | eq(simd, v, b'+')
                | eq(simd, v, b'/')
                | eq(simd, v, b'-')
                | eq(simd, v, b'_')
        }

        /// [`super::super::JsonMasks`] on AVX-512BW.
        #[inline(always)]
        pub fn json(simd: V4, word: &[u8; 64]) -> (u64, u64) {
            let v = load(simd, word);
            (eq(simd, v, b'\\'), eq(simd, v, b'u') | eq(simd, v, b'/'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One word's masks at a level.
    struct Word<'a>(&'a [u8; 64]);

    impl MaskFinder<(u64, (u64, u64))> for Word<'_> {
        fn run(self, masks: impl Masks) -> (u64, (u64, u64)) {
            (masks.base64(self.0), masks.json(self.0))
        }
    }

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
                *x = (crate::redact::xorshift(&mut state) >> 24) as u8;
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
        with_masks(level, Word(word)).0
    }

    fn json_masks(level: Level, word: &[u8; 64]) -> (u64, u64) {
        with_masks(level, Word(word)).1
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
