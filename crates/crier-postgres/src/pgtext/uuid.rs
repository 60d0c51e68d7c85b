//! `uuid` texts: the form `uuid_out` writes, and what `uuid_in` reads.

/// Whether `text` is a `uuid` as PostgreSQL writes it: 36 characters, lowercase hex,
/// hyphens at 8, 13, 18 and 23.
pub(crate) fn is_canonical(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// Reads a `uuid` as `uuid_in` does: 32 hex digits, any case, optionally in braces,
/// optionally with a hyphen after any group of four digits. (Not the `uuid` crate's
/// parser: it accepts only the standard hyphen positions, and also `urn:uuid:` forms,
/// which PostgreSQL rejects.)
pub(crate) fn parse(text: &str) -> Option<[u8; 16]> {
    let bytes = text.as_bytes();
    let braces = bytes.first() == Some(&b'{');
    let mut i = usize::from(braces);
    let mut out = [0u8; 16];
    for (k, byte) in out.iter_mut().enumerate() {
        let hi = hex_digit(*bytes.get(i)?)?;
        let lo = hex_digit(*bytes.get(i + 1)?)?;
        *byte = (hi << 4) | lo;
        i += 2;
        if k % 2 == 1 && k < 15 && bytes.get(i) == Some(&b'-') {
            i += 1;
        }
    }
    if braces {
        if bytes.get(i) != Some(&b'}') {
            return None;
        }
        i += 1;
    }
    (i == bytes.len()).then_some(out)
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}
