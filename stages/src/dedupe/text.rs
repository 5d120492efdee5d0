//! How dedupe sees a row's text: lowercased alphanumeric words, each hashed to 64 bits, and the
//! word sequence as one normalized string for exact matching.
//!
//! Punctuation, case and whitespace do not make two texts different; anything else does.

/// A text as words.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Words {
    /// The words, lowercased, joined by single spaces.
    pub normalized: String,
    /// One 64-bit hash per word.
    pub hashes: Vec<u64>,
}

/// MurmurHash3's 64-bit finalizer: a fast, well-mixing bijection.
#[inline]
pub fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The hash of a run of word hashes (a shingle or an n-gram); order matters.
#[inline]
pub fn combine(words: &[u64]) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64 ^ words.len() as u64;
    for &w in words {
        h = mix(h ^ w).wrapping_add(0x9e37_79b9_7f4a_7c15);
    }
    h
}

/// Splits `text` into lowercase alphanumeric words.
pub fn words(text: &str) -> Words {
    let mut out = Words {
        normalized: String::with_capacity(text.len()),
        hashes: Vec::with_capacity(text.len() / 5),
    };
    split_words(text, &mut out.normalized, &mut out.hashes);
    out
}

/// [`words`] into buffers the caller reuses over many texts (both are cleared first). ASCII, the
/// common case, takes a byte-wise path; other characters go through Unicode's rules.
pub fn split_words(text: &str, normalized: &mut String, hashes: &mut Vec<u64>) {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0100_0000_01b3;
    normalized.clear();
    hashes.clear();
    let bytes = text.as_bytes();
    let mut h = FNV_OFFSET;
    let mut in_word = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            i += 1;
            if b.is_ascii_alphanumeric() {
                if !in_word && !normalized.is_empty() {
                    normalized.push(' ');
                }
                in_word = true;
                let l = b.to_ascii_lowercase();
                normalized.push(l as char);
                h = (h ^ l as u64).wrapping_mul(FNV_PRIME);
                continue;
            }
        } else {
            let c = text[i..].chars().next().unwrap_or_default();
            i += c.len_utf8();
            if c.is_alphanumeric() {
                if !in_word && !normalized.is_empty() {
                    normalized.push(' ');
                }
                in_word = true;
                for l in c.to_lowercase() {
                    normalized.push(l);
                    let mut buf = [0u8; 4];
                    for b in l.encode_utf8(&mut buf).bytes() {
                        h = (h ^ b as u64).wrapping_mul(FNV_PRIME);
                    }
                }
                continue;
            }
        }
        if in_word {
            hashes.push(mix(h));
            h = FNV_OFFSET;
            in_word = false;
        }
    }
    if in_word {
        hashes.push(mix(h));
    }
}

/// The exact-duplicate key of a normalized text.
pub fn exact_key(normalized: &str) -> [u8; 16] {
    let h = blake3::hash(normalized.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&h.as_bytes()[..16]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_punctuation_do_not_count() {
        let a = words("Which drug: METFORMIN, or insulin?");
        let b = words("which  drug metformin or insulin");
        assert_eq!(a, b);
        assert_eq!(a.normalized, "which drug metformin or insulin");
        assert_eq!(a.hashes.len(), 5);
        assert_ne!(words("metformin or insulin").hashes, words("insulin or metformin").hashes);
    }

    #[test]
    fn unicode_words_are_lowercased_and_split() {
        let a = words("Ménière's DISEASE—ÉTAT 2e");
        assert_eq!(a.normalized, "ménière s disease état 2e");
        assert_eq!(a.hashes, words("ménière s disease état 2e").hashes);
        assert_eq!(a.hashes.len(), 5);
    }

    #[test]
    fn shingle_hash_depends_on_order() {
        let w = words("chest pain radiating left arm").hashes;
        assert_ne!(combine(&w[0..2]), combine(&[w[1], w[0]]));
        assert_eq!(combine(&w[1..3]), combine(&words("pain radiating").hashes));
    }
}
