//! Shannon entropy, the measure behind the optional entropy detector and the known-value filter.

/// One byte value's share of the entropy: it occurs `c` times in `len` bytes.
fn term(c: u32, len: f64) -> f64 {
    let p = f64::from(c) / len;
    -p * p.log2()
}

/// Values up to this long take their terms from [`terms`].
const TABLE_LEN: usize = 64;

/// `term(c, len)` for every `1 <= c <= len <= TABLE_LEN`, at `len * (len - 1) / 2 + c - 1`:
/// computed by the same function, so a lookup is the very same number (and saves the
/// `log2` calls that dominated accepting a rule match's secret).
fn terms() -> &'static [f64] {
    static TERMS: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    TERMS.get_or_init(|| {
        (1..=TABLE_LEN)
            .flat_map(|len| (1..=len).map(move |c| (c, len)))
            .map(|(c, len)| term(c as u32, len as f64))
            .collect()
    })
}

/// Bits of Shannon entropy per byte of `data` (0.0 for empty input).
pub fn shannon_entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let n = data.len();
    let len = n as f64;
    let table = if n <= TABLE_LEN {
        terms().get(n * (n - 1) / 2..n * (n + 1) / 2)
    } else {
        None
    };
    let share = |c: u32| match table {
        Some(t) => t
            .get((c as usize).wrapping_sub(1))
            .copied()
            .unwrap_or_else(|| term(c, len)),
        None => term(c, len),
    };
    if data.len() <= usize::from(u8::MAX) {
        // Short values (every secret a rule reports): byte counts fit a u8, and a bitmap of the
        // bytes present visits only those, in the same ascending order as the loop below, so
        // the sum is the very same number.
        let mut counts = [0u8; 256];
        let mut present = [0u64; 4];
        for &b in data {
            counts[usize::from(b)] += 1;
            present[usize::from(b >> 6)] |= 1 << (b & 63);
        }
        return present
            .iter()
            .enumerate()
            .flat_map(|(w, &bits)| {
                let mut bits = bits;
                std::iter::from_fn(move || {
                    (bits != 0).then(|| {
                        let b = bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        w * 64 + b
                    })
                })
            })
            .map(|b| share(u32::from(counts[b])))
            .sum();
    }
    let mut counts = [0u32; 256];
    for &b in data {
        counts[usize::from(b)] += 1;
    }
    counts.iter().filter(|&&c| c > 0).map(|&c| share(c)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counting loop every input once went through, kept as the reference.
    fn reference(data: &[u8]) -> f64 {
        let mut counts = [0u32; 256];
        for &b in data {
            counts[usize::from(b)] += 1;
        }
        let len = data.len() as f64;
        counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = f64::from(c) / len;
                -p * p.log2()
            })
            .sum()
    }

    #[test]
    fn short_input_path_gives_the_identical_number() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 1..600 {
            for alphabet in [2u64, 16, 62, 256] {
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x % alphabet) as u8
                    })
                    .collect();
                assert_eq!(
                    shannon_entropy(&data).to_bits(),
                    reference(&data).to_bits(),
                    "{len} {alphabet}"
                );
            }
        }
    }

    #[test]
    fn entropy_of_uniform_and_constant_data() {
        assert_eq!(shannon_entropy(b""), 0.0);
        assert_eq!(shannon_entropy(b"aaaaaaaa"), 0.0);
        assert!((shannon_entropy(b"abcdefgh") - 3.0).abs() < 1e-9);
    }
}
