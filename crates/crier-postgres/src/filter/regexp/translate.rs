//! The translation of a PostgreSQL regular expression to the `regex` crate's syntax,
//! checked as PostgreSQL checks it.

use std::fmt::Write as _;

use super::{MAX_REGEX_DEPTH, MAX_REGEX_REPEAT, push_regex_literal};

/// What the previous piece of a regular expression was, for where a quantifier may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegexPiece {
    /// Nothing yet in this branch: the start, or just after `(` or `|`.
    Nothing,
    /// Something a quantifier may follow: a character, class, `.` or group.
    Atom,
    /// `^`, `$` or a `\` constraint, which cannot be quantified.
    Constraint,
    /// A quantifier, which cannot be quantified again.
    Quantifier,
}

/// What a backslash escape stands for.
enum RegexEscape {
    Char(char),
    /// A class: its items in the `regex` crate's bracket syntax, and whether it is
    /// negated (`\D`, `\S`, `\W`).
    Class(&'static str, bool),
    /// A constraint, in the `regex` crate's syntax.
    Constraint(&'static str),
}

/// The items, in the `regex` crate's bracket syntax, of a POSIX class named in a bracket
/// expression (`[[:alpha:]]`). The crate's own POSIX classes are ASCII-only, so the
/// Unicode ones are spelled out, each as Rust's `char` predicate of the same name defines
/// it (`alpha` is `char::is_alphabetic`, `alnum` `char::is_alphanumeric`, …); `word` is
/// the crate's Unicode `\w`, the word characters of `\m \M \y \Y`.
fn posix_class_items(name: &str) -> Option<&'static str> {
    Some(match name {
        "alnum" => r"\p{Alphabetic}\p{N}",
        "alpha" => r"\p{Alphabetic}",
        "blank" => r"\x{20}\t",
        "cntrl" => r"\p{Cc}",
        "digit" => "0-9",
        "graph" => r"[^\p{Cc}\p{White_Space}]",
        "lower" => r"\p{Lowercase}",
        "print" => r"\P{Cc}",
        "punct" => "[:punct:]",
        "space" => r"\p{White_Space}",
        "upper" => r"\p{Uppercase}",
        "word" => r"\w",
        "xdigit" => "0-9A-Fa-f",
        _ => return None,
    })
}

/// Writes a class's items inside a bracket expression being written.
fn push_class_items(out: &mut String, items: &str, negated: bool) {
    if negated {
        out.push_str("[^");
        out.push_str(items);
        out.push(']');
    } else {
        out.push_str(items);
    }
}

/// The body of a PostgreSQL regular expression (after any `***:` prefix and leading
/// embedded options) in the `regex` crate's syntax, or why PostgreSQL would reject it.
pub(super) fn translate(body: &str) -> Result<String, String> {
    let mut translator = RegexTranslator {
        chars: body.chars().collect(),
        at: 0,
        out: String::with_capacity(body.len() * 2),
    };
    translator.run()?;
    Ok(translator.out)
}

/// Reads a PostgreSQL regular expression and writes it in the `regex` crate's syntax,
/// checking it as PostgreSQL does.
struct RegexTranslator {
    chars: Vec<char>,
    at: usize,
    out: String,
}

impl RegexTranslator {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.at + offset).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        Some(c)
    }

    fn run(&mut self) -> Result<(), String> {
        let unbalanced = || "parentheses () not balanced".to_owned();
        let mut depth = 0;
        let mut last = RegexPiece::Nothing;
        loop {
            if self.starts_quantifier() {
                if last != RegexPiece::Atom {
                    return Err("quantifier operand invalid".to_owned());
                }
                self.quantifier()?;
                last = RegexPiece::Quantifier;
                continue;
            }
            let Some(c) = self.bump() else {
                break;
            };
            last = match c {
                '(' => {
                    if depth >= MAX_REGEX_DEPTH {
                        return Err("parentheses are nested too deeply".to_owned());
                    }
                    if self.peek() == Some('?') {
                        if self.peek_at(1) != Some(':') {
                            return Err("lookaround constraints and `(?` options inside a pattern are not supported".to_owned());
                        }
                        self.at += 2;
                    }
                    depth += 1;
                    self.out.push_str("(?:");
                    RegexPiece::Nothing
                }
                ')' => {
                    if depth == 0 {
                        return Err(unbalanced());
                    }
                    depth -= 1;
                    self.out.push(')');
                    RegexPiece::Atom
                }
                '|' => {
                    self.out.push('|');
                    RegexPiece::Nothing
                }
                // With `.` matching newlines (the crate's `s` flag).
                '.' => {
                    self.out.push('.');
                    RegexPiece::Atom
                }
                // Not the crate's `^` and `$`, so that no flag can make them match at
                // line breaks.
                '^' => {
                    self.out.push_str(r"\A");
                    RegexPiece::Constraint
                }
                '$' => {
                    self.out.push_str(r"\z");
                    RegexPiece::Constraint
                }
                '[' => {
                    self.bracket()?;
                    RegexPiece::Atom
                }
                '\\' => match self.escape(false)? {
                    RegexEscape::Char(c) => {
                        push_regex_literal(&mut self.out, c);
                        RegexPiece::Atom
                    }
                    RegexEscape::Class(items, negated) => {
                        self.out.push('[');
                        push_class_items(&mut self.out, items, negated);
                        self.out.push(']');
                        RegexPiece::Atom
                    }
                    RegexEscape::Constraint(constraint) => {
                        self.out.push_str(constraint);
                        RegexPiece::Constraint
                    }
                },
                c => {
                    push_regex_literal(&mut self.out, c);
                    RegexPiece::Atom
                }
            };
        }
        if depth > 0 {
            return Err(unbalanced());
        }
        Ok(())
    }

    fn starts_quantifier(&self) -> bool {
        match self.peek() {
            Some('*' | '+' | '?') => true,
            Some('{') => self.peek_at(1).is_some_and(|c| c.is_ascii_digit()),
            _ => false,
        }
    }

    /// `*`, `+`, `?` or a bound, optionally followed by `?` (non-greedy, which matches the
    /// same strings).
    fn quantifier(&mut self) -> Result<(), String> {
        match self.bump() {
            Some('{') => {
                let (min, max) = self.bound()?;
                let _ = match max {
                    Some(max) if max == min => write!(self.out, "{{{min}}}"),
                    Some(max) => write!(self.out, "{{{min},{max}}}"),
                    None => write!(self.out, "{{{min},}}"),
                };
            }
            Some(c) => self.out.push(c),
            None => {}
        }
        if self.peek() == Some('?') {
            self.at += 1;
            self.out.push('?');
        }
        Ok(())
    }

    /// `{m}`, `{m,}`, `{m,n}`, after the `{`.
    fn bound(&mut self) -> Result<(u32, Option<u32>), String> {
        let invalid = || "invalid repetition count(s)".to_owned();
        let min = self.count().ok_or_else(invalid)?;
        let max = if self.peek() == Some(',') {
            self.at += 1;
            if self.peek() == Some('}') {
                None
            } else {
                Some(self.count().ok_or_else(invalid)?)
            }
        } else {
            Some(min)
        };
        if self.bump() != Some('}') {
            return Err("braces {} not balanced".to_owned());
        }
        if min > MAX_REGEX_REPEAT || max.is_some_and(|max| max > MAX_REGEX_REPEAT || max < min) {
            return Err(invalid());
        }
        Ok((min, max))
    }

    fn count(&mut self) -> Option<u32> {
        let start = self.at;
        let mut value: u32 = 0;
        while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
            value = value.saturating_mul(10).saturating_add(d);
            self.at += 1;
        }
        (self.at > start).then_some(value)
    }

    /// A backslash escape, after the backslash.
    fn escape(&mut self, in_bracket: bool) -> Result<RegexEscape, String> {
        let Some(c) = self.bump() else {
            return Err("invalid escape \\ sequence: the pattern ends with a backslash".to_owned());
        };
        let constraint = |constraint| {
            if in_bracket {
                Err(format!("invalid escape \\{c} sequence inside brackets"))
            } else {
                Ok(RegexEscape::Constraint(constraint))
            }
        };
        Ok(match c {
            'a' => RegexEscape::Char('\u{07}'),
            // Backspace, as in PostgreSQL (not the crate's word boundary).
            'b' => RegexEscape::Char('\u{08}'),
            'B' => RegexEscape::Char('\\'),
            'e' => RegexEscape::Char('\u{1b}'),
            'f' => RegexEscape::Char('\u{0c}'),
            'n' => RegexEscape::Char('\n'),
            'r' => RegexEscape::Char('\r'),
            't' => RegexEscape::Char('\t'),
            'v' => RegexEscape::Char('\u{0b}'),
            'c' => {
                let control = self
                    .bump()
                    .ok_or_else(|| "invalid escape \\c sequence".to_owned())?;
                RegexEscape::Char(char::from_u32(u32::from(control) & 0x1f).unwrap_or('\0'))
            }
            'x' => RegexEscape::Char(self.hex_escape(1, 8)?),
            'u' => RegexEscape::Char(self.hex_escape(4, 4)?),
            'U' => RegexEscape::Char(self.hex_escape(8, 8)?),
            '0' => {
                let mut value = 0;
                for _ in 0..2 {
                    match self.peek().and_then(|c| c.to_digit(8)) {
                        Some(d) => {
                            value = value * 8 + d;
                            self.at += 1;
                        }
                        None => break,
                    }
                }
                RegexEscape::Char(char::from_u32(value).unwrap_or('\0'))
            }
            '1'..='9' => return Err("back-references are not supported".to_owned()),
            // ASCII digits, as `[[:digit:]]`; the crate's Unicode `\d` has more.
            'd' => RegexEscape::Class("0-9", false),
            'D' => RegexEscape::Class("0-9", true),
            's' => RegexEscape::Class(r"\s", false),
            'S' => RegexEscape::Class(r"\s", true),
            'w' => RegexEscape::Class(r"\w", false),
            'W' => RegexEscape::Class(r"\w", true),
            'A' => return constraint(r"\A"),
            // End of text only (the crate's `\z`; its `\Z` does not exist).
            'Z' => return constraint(r"\z"),
            'm' => return constraint(r"\b{start}"),
            'M' => return constraint(r"\b{end}"),
            'y' => return constraint(r"\b"),
            'Y' => return constraint(r"\B"),
            c if c.is_alphanumeric() => return Err(format!("invalid escape \\{c} sequence")),
            c => RegexEscape::Char(c),
        })
    }

    /// Between `min` and `max` hex digits, as a character.
    fn hex_escape(&mut self, min: usize, max: usize) -> Result<char, String> {
        let mut value: u32 = 0;
        let mut digits = 0;
        while digits < max {
            match self.peek().and_then(|c| c.to_digit(16)) {
                Some(d) => {
                    value = value * 16 + d;
                    digits += 1;
                    self.at += 1;
                }
                None => break,
            }
        }
        if digits < min {
            return Err("invalid escape: too few hex digits".to_owned());
        }
        char::from_u32(value).ok_or_else(|| "invalid escape: not a character".to_owned())
    }

    /// A bracket expression, after the `[`.
    fn bracket(&mut self) -> Result<(), String> {
        let unbalanced = || "brackets [] not balanced".to_owned();
        let mut class = String::from("[");
        if self.peek() == Some('^') {
            self.at += 1;
            class.push('^');
        }
        let mut first = true;
        loop {
            let c = self.bump().ok_or_else(unbalanced)?;
            if c == ']' && !first {
                break;
            }
            first = false;
            let low = match c {
                '[' if self.peek() == Some(':') => {
                    self.at += 1;
                    let name = self.bracket_name(':')?;
                    let items = posix_class_items(&name)
                        .ok_or_else(|| format!("invalid character class `{name}`"))?;
                    class.push_str(items);
                    continue;
                }
                '[' if matches!(self.peek(), Some('.' | '=')) => {
                    let delimiter = self.bump().unwrap_or('.');
                    self.single_char_name(delimiter)?
                }
                '\\' => match self.escape(true)? {
                    RegexEscape::Char(c) => c,
                    RegexEscape::Class(items, negated) => {
                        push_class_items(&mut class, items, negated);
                        continue;
                    }
                    RegexEscape::Constraint(_) => {
                        return Err("invalid escape inside brackets".to_owned());
                    }
                },
                c => c,
            };
            push_regex_literal(&mut class, low);
            if self.peek() == Some('-') && self.peek_at(1).is_some_and(|c| c != ']') {
                self.at += 1;
                let high = match self.bump().ok_or_else(unbalanced)? {
                    '[' if matches!(self.peek(), Some('.' | '=')) => {
                        let delimiter = self.bump().unwrap_or('.');
                        self.single_char_name(delimiter)?
                    }
                    '\\' => match self.escape(true)? {
                        RegexEscape::Char(c) => c,
                        _ => return Err("invalid character range".to_owned()),
                    },
                    c => c,
                };
                if high < low {
                    return Err("invalid character range".to_owned());
                }
                class.push('-');
                push_regex_literal(&mut class, high);
            }
        }
        class.push(']');
        self.out.push_str(&class);
        Ok(())
    }

    /// The text of `[:name:]` (or `[.x.]`, `[=x=]`) after the opening `[:`, up to and
    /// including the closing `:]`.
    fn bracket_name(&mut self, delimiter: char) -> Result<String, String> {
        let mut name = String::new();
        loop {
            match self.bump() {
                Some(c) if c == delimiter && self.peek() == Some(']') => {
                    self.at += 1;
                    return Ok(name);
                }
                Some(c) => name.push(c),
                None => return Err("brackets [] not balanced".to_owned()),
            }
        }
    }

    /// `[.x.]` or `[=x=]` naming a single character.
    fn single_char_name(&mut self, delimiter: char) -> Result<char, String> {
        let name = self.bracket_name(delimiter)?;
        let mut chars = name.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Ok(c),
            _ => Err(format!("invalid collating element `{name}`")),
        }
    }
}
