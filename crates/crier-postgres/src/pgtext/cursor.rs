//! A position in a text being parsed, for the hand-written readers of this module.

use super::is_space;

/// A position in a text, moving forward one character at a time.
///
/// The syntaxes read with it (arrays, records, hstore, JSON, dates) are delimited by ASCII
/// characters, so the byte counts callers pass to [`Cursor::advance`], found in
/// [`Cursor::rest`], always end on a character boundary.
pub(crate) struct Cursor<'a> {
    text: &'a str,
    position: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `text`.
    pub(crate) fn new(text: &'a str) -> Cursor<'a> {
        Cursor { text, position: 0 }
    }

    /// The text not read yet.
    pub(crate) fn rest(&self) -> &'a str {
        &self.text[self.position..]
    }

    /// The next character, not consumed.
    pub(crate) fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    /// Consumes the next character.
    pub(crate) fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.position += c.len_utf8();
        Some(c)
    }

    /// Consumes the next character; `None` unless it is `expected`. (On a mismatch the
    /// character is consumed all the same: callers give up on the text then.)
    pub(crate) fn expect(&mut self, expected: char) -> Option<()> {
        (self.next()? == expected).then_some(())
    }

    /// Moves on `bytes` bytes (always a whole number of characters here).
    pub(crate) fn advance(&mut self, bytes: usize) {
        self.position += bytes;
    }

    /// Whether everything has been read.
    pub(crate) fn at_end(&self) -> bool {
        self.position >= self.text.len()
    }

    /// Skips ASCII whitespace, the only kind the array, record, hstore and JSON syntaxes
    /// ignore (an unquoted array element may begin with a no-break space).
    pub(crate) fn skip_whitespace(&mut self) {
        let rest = self.rest();
        self.position += rest.len() - rest.trim_start_matches(is_space).len();
    }

    /// Skips spaces (`' '` only, as between a date and its time).
    pub(crate) fn skip_spaces(&mut self) {
        let rest = self.rest();
        self.position += rest.len() - rest.trim_start_matches(' ').len();
    }

    /// The run of ASCII digits here, consumed (possibly empty).
    pub(crate) fn digits(&mut self) -> &'a str {
        let rest = self.rest();
        let length = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        self.position += length;
        &rest[..length]
    }

    /// Exactly `n` ASCII digits, as a number.
    pub(crate) fn fixed_digits(&mut self, n: usize) -> Option<i64> {
        let mut value = 0;
        for _ in 0..n {
            let digit = self.next()?.to_digit(10)?;
            value = value * 10 + i64::from(digit);
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_characters_whitespace_and_digits() {
        let mut cursor = Cursor::new(" \t€2026-1x");
        cursor.skip_whitespace();
        assert_eq!(cursor.peek(), Some('€'));
        assert_eq!(cursor.next(), Some('€'));
        assert_eq!(cursor.digits(), "2026");
        assert_eq!(cursor.expect('-'), Some(()));
        assert_eq!(cursor.fixed_digits(2), None, "one digit, then `x`");
        assert!(cursor.at_end());
        assert_eq!(cursor.next(), None);

        let mut cursor = Cursor::new("  \u{a0}x");
        cursor.skip_spaces();
        assert_eq!(cursor.rest(), "\u{a0}x");
        cursor.skip_whitespace();
        assert_eq!(
            cursor.rest(),
            "\u{a0}x",
            "a no-break space is not ASCII whitespace"
        );
        assert_eq!(cursor.fixed_digits(1), None, "not a digit");
        let mut cursor = Cursor::new("0123");
        assert_eq!(cursor.fixed_digits(3), Some(12));
        assert_eq!(cursor.rest(), "3");
        assert_eq!(cursor.expect('4'), None);
        assert!(cursor.at_end(), "a mismatch is consumed");
    }
}
