//! The bounds that keep parsing an attacker's push cheap: body, object, count, total inflated
//! size and delta depth. Going over any of them is a refusal, never a silent skip.

/// Bounds applied while parsing a push. Over any of them, parsing fails with a typed error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body (commands plus pack) accepted.
    pub max_pack_bytes: u64,
    /// Largest single object, delta instruction stream or delta result.
    pub max_object_bytes: u64,
    /// Largest object count a pack may declare.
    pub max_objects: u64,
    /// Largest sum of inflated and delta-rebuilt bytes (defends against zip bombs spread over
    /// many objects).
    pub max_total_bytes: u64,
    /// Longest delta chain (git itself never writes chains deeper than 4095).
    pub max_delta_depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pack_bytes: 512 << 20,
            max_object_bytes: 100 << 20,
            max_objects: 1_000_000,
            max_total_bytes: 2 << 30,
            max_delta_depth: 4095,
        }
    }
}
