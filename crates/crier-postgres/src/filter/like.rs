//! `like` and `ilike` patterns.
//!
//! Not translated to a `regex` crate pattern, although that would match the same strings:
//! a compiled regex needs a size limit (each `_` compiles to about 1 KiB of automaton, and a
//! filter may be megabytes long), and an oversized LIKE pattern could only be reported as
//! `FilterError::InvalidLikePattern`, whose text says the pattern ends with its escape
//! character. This matcher needs no compilation and no limit: it backtracks only to the
//! last `%`, so it takes at most pattern × text steps.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LikeToken {
    Char(char),
    /// `_`
    One,
    /// `%`
    Any,
}

/// A compiled `LIKE` (or, lowercased, `ILIKE`) pattern.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LikePattern {
    tokens: Vec<LikeToken>,
    pub(super) case_insensitive: bool,
}

impl LikePattern {
    /// `None` if the pattern ends with a lone backslash.
    pub(super) fn compile(pattern: &str, case_insensitive: bool) -> Option<LikePattern> {
        let mut tokens = Vec::new();
        let push_char = |tokens: &mut Vec<LikeToken>, c: char| {
            if case_insensitive {
                tokens.extend(c.to_lowercase().map(LikeToken::Char));
            } else {
                tokens.push(LikeToken::Char(c));
            }
        };
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => push_char(&mut tokens, chars.next()?),
                '%' => {
                    if tokens.last() != Some(&LikeToken::Any) {
                        tokens.push(LikeToken::Any);
                    }
                }
                '_' => tokens.push(LikeToken::One),
                c => push_char(&mut tokens, c),
            }
        }
        Some(LikePattern {
            tokens,
            case_insensitive,
        })
    }

    pub(super) fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = if self.case_insensitive {
            text.to_lowercase().chars().collect()
        } else {
            text.chars().collect()
        };
        let tokens = &self.tokens;
        let (mut p, mut t) = (0, 0);
        // The last `%` seen and the text position it is currently matched up to.
        let mut backtrack: Option<(usize, usize)> = None;
        while t < text.len() {
            match tokens.get(p) {
                Some(LikeToken::Any) => {
                    backtrack = Some((p, t));
                    p += 1;
                    continue;
                }
                Some(LikeToken::One) => {
                    p += 1;
                    t += 1;
                    continue;
                }
                Some(LikeToken::Char(c)) if *c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
            match backtrack {
                Some((star, matched)) => {
                    p = star + 1;
                    t = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            }
        }
        tokens[p..].iter().all(|token| *token == LikeToken::Any)
    }
}
