//! Applying a rewrite's edits to the statement's original bytes.

use bytes::BufMut;

use super::Edit;

/// Apply edits (sorted, byte offsets) to raw bytes.
pub fn splice(original: &[u8], edits: &[Edit]) -> Vec<u8> {
    let extra: usize = edits.iter().map(|e| e.insert.len()).sum();
    let mut out = Vec::with_capacity(original.len() + extra);
    splice_into(&mut out, original, edits);
    out
}

/// Append `original` with `edits` (sorted, byte offsets) applied to `out`.
pub fn splice_into<B: BufMut>(out: &mut B, original: &[u8], edits: &[Edit]) {
    let mut at = 0;
    for e in edits {
        let offset = e.offset.clamp(at, original.len());
        out.put_slice(&original[at..offset]);
        out.put_slice(e.insert.as_bytes());
        at = (offset + e.replaced).min(original.len());
    }
    out.put_slice(&original[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_inserts_at_byte_offsets_of_the_original() {
        // EUC-KR bytes before the table name stay as they were.
        let original = b"select '\xbb\xe7' from users";
        let edits = [Edit {
            offset: original.len() - 5,
            replaced: 0,
            insert: "shared_common.".into(),
        }];
        assert_eq!(
            splice(original, &edits),
            b"select '\xbb\xe7' from shared_common.users".to_vec()
        );
    }
}
