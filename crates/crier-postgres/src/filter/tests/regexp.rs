//! `match` and `imatch`: the translation of PostgreSQL regular expressions and its limits.

use super::*;

fn re(pattern: &str, text: &str) -> bool {
    passes(&format!("v=match.{pattern}"), json!(text))
}

fn ire(pattern: &str, text: &str) -> bool {
    passes(&format!("v=imatch.{pattern}"), json!(text))
}

#[test]
fn regex_basics() {
    assert!(re("ell", "hello"), "unanchored");
    assert!(re("^hel", "hello"));
    assert!(!re("^ell", "hello"));
    assert!(re("llo$", "hello"));
    assert!(!re("ll$", "hello"));
    assert!(re("^$", ""));
    assert!(re("", "anything"));
    assert!(re("h.llo", "hallo"));
    assert!(re("a.b", "a\nb"), "`.` matches a newline");
    assert!(re("^(cat|dog)s?$", "dogs"));
    assert!(!re("^(cat|dog)s?$", "cow"));
    assert!(re("^(?:ab)+$", "ababab"));
    assert!(!re("^(?:ab)+$", "ababa"));
    assert!(re("^a*$", ""));
    assert!(re("^a+b?c*$", "aaacc"));
    assert!(re("^a{3}$", "aaa"));
    assert!(!re("^a{3}$", "aaaa"));
    assert!(re("\"^a{2,}$\"", "aaaaa"));
    assert!(!re("\"^a{2,}$\"", "a"));
    assert!(re("\"^a{1,3}$\"", "aa"));
    assert!(!re("\"^a{1,3}$\"", "aaaa"));
    assert!(re("(a{1,3})", "a"), "parentheses protect commas too");
    assert!(re("^a{0}b$", "b"));
    assert!(re("^a*?b+?$", "aab"), "non-greedy quantifiers");
    assert!(
        re("\"^x{,y$\"", "x{,y"),
        "`{{` not before a digit is literal"
    );
    assert!(re("a|", "zzz"));
    assert!(re("^(a|)$", ""));
    assert!(re("^()$", ""));
    assert!(re("^(a*)*$", "aaaa"));
    assert!(re("^post-", "post-123"));
    assert!(
        re("^\"q\"$", "\"q\""),
        "a quote inside the value is literal"
    );
    assert!(re("\"^q$\"", "q"));
}

#[test]
fn regex_classes_and_escapes() {
    assert!(re("^[a-c]+$", "abcba"));
    assert!(!re("^[a-c]+$", "abd"));
    assert!(re("^[^0-9]+$", "abc"));
    assert!(!re("^[^0-9]+$", "a1"));
    assert!(re("^[]a]+$", "]a]"));
    assert!(re("^[a-]+$", "-a-"));
    assert!(re("^[[:alpha:]]+$", "héllo"));
    assert!(re("^[[:digit:][:space:]]+$", "1 2\t3"));
    assert!(re("^[[:upper:]][[:lower:]]+$", "Hello"));
    assert!(re("^[[:xdigit:]]+$", "DeadBeef"));
    assert!(re("^[[:punct:]]+$", "!?.,"));
    assert!(re("^[[.a.]-c]+$", "abc"));
    assert!(re(r"^\d+$", "12345"));
    assert!(!re(r"^\d+$", "12a45"));
    assert!(re(r"^\D+$", "abc"));
    assert!(re(r"^\w+\s\w+$", "hello world"));
    assert!(re(r"^\S+$", "a-b"));
    assert!(re(r"^\W$", "-"));
    assert!(re(r"^[\d\s]+$", "1 2"));
    assert!(re(r"^[\w-]+$", "a-b_c"));
    assert!(re(r"^a\.b$", "a.b"));
    assert!(!re(r"^a\.b$", "axb"));
    assert!(re(r"^\(x\)$", "(x)"));
    assert!(re(r"^a\tb$", "a\tb"));
    assert!(re(r"^\x41\u0042\U00000043$", "ABC"));
    assert!(re(r"^\\$", r"\"));
    assert!(re(r"^\Bx$", r"\x"));
    assert!(re(r"\Aab\Z", "ab"));
    assert!(re(r"\mcat\M", "the cat sat"));
    assert!(!re(r"\mcat\M", "concatenate"));
    assert!(re(r"\ycat\y", "a cat"));
    assert!(re(r"\Yat", "cat"));
    assert!(!re(r"\Ycat", "cat"));
    assert!(re("^é+$", "ééé"), "characters, not bytes");
    assert!(re("^.$", "é"));
    assert!(re("***=a.b", "xa.by"));
    assert!(!re("***=a.b", "axb"));
    assert!(re("***:^a", "ab"));
    assert!(re("(?q)a.b", "a.b"));
}

#[test]
fn regex_case_insensitivity() {
    assert!(ire("^HEL+O$", "hello"));
    assert!(ire("^hello$", "HELLO"));
    assert!(ire("^[A-Z]+$", "abc"));
    assert!(ire("^[a-z]+$", "ABC"));
    assert!(!ire("^[^a]$", "A"));
    assert!(ire("^[[:upper:]]$", "a"));
    assert!(ire("^ÉTÉ$", "été"));
    assert!(!re("^hello$", "HELLO"));
    assert!(re("(?i)^hello$", "HELLO"));
    assert!(!ire("(?c)^hello$", "HELLO"));
    assert!(
        !passes("v=match.x", json!(1)),
        "match on a number is unknown"
    );
    assert!(!passes("v=not.match.x", json!(1)));
    assert!(passes("v=not.imatch.^x", json!("Yx")));
}

#[test]
fn regex_time_is_linear() {
    let text = "a".repeat(20_000);
    let start = std::time::Instant::now();
    assert!(!re("^(a*)*b$", &text));
    assert!(!re("(a|aa)*c", &text));
    assert!(!re("^(a?){30}a{30}b", &text));
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn deeply_nested_regexes_are_rejected() {
    let deep = format!("v=match.{}a{}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(matches!(error(&deep), FilterError::InvalidRegex { .. }));
    let fine = format!("v=match.{}a{}", "(".repeat(100), ")".repeat(100));
    assert!(passes(&fine, json!("a")));
}

#[test]
fn huge_regex_programs_are_rejected() {
    // The bound is the compiled size (2 MiB), not a count of repetitions: literal
    // characters are cheap, Unicode classes are not.
    for pattern in [
        "((a{255}){255}){2}",
        r"\w{60}",
        "[[:alpha:]]{255}",
        "(.{255}){10}",
    ] {
        assert_eq!(
            error(&format!("v=match.{pattern}")),
            FilterError::InvalidRegex {
                pattern: pattern.to_owned(),
                reason: "regular expression is too large".to_owned(),
            },
        );
    }
    assert!(matches!(
        error("v=imatch.((a{255}){255})"),
        FilterError::InvalidRegex { .. }
    ));
    for pattern in ["a{255}", "((a{100}){100})", r"\w{30}", ".{255}"] {
        assert!(
            Filter::parse(&format!("v=match.{pattern}")).is_ok(),
            "{pattern}"
        );
    }
}

#[test]
fn regex_translation_writes_nothing_unescaped() {
    let translated = |pattern: &str| translate_regex(pattern, false).map(|(t, _)| t);
    assert_eq!(translated(r"^a.b$").as_deref(), Ok(r"\Aa.b\z"));
    assert_eq!(translated("(x|y)+?").as_deref(), Ok(r"(?:x|y)+?"));
    assert_eq!(
        translated(r"a\{1\}{2,3}").as_deref(),
        Ok(r"a\x{7B}1\x{7D}{2,3}")
    );
    assert_eq!(
        translated(r"[^a-z[:alpha:]\d\W-]").as_deref(),
        Ok(r"[^a-z\p{Alphabetic}0-9[^\w]\x{2D}]")
    );
    assert_eq!(
        translated(r"\m\M\y\Y\A\Z").as_deref(),
        Ok(r"\b{start}\b{end}\b\B\A\z")
    );
    assert_eq!(translated("é ").as_deref(), Ok(r"\x{E9}\x{20}"));
    assert_eq!(
        translate_regex("***=(?i)a", false),
        Ok((r"\x{28}\x{3F}i\x{29}a".to_owned(), false))
    );
    assert_eq!(translate_regex("(?i)a", false), Ok(("a".to_owned(), true)));
    assert_eq!(translate_regex("(?c)a", true), Ok(("a".to_owned(), false)));
    assert_eq!(
        translate_regex("***:(?iq)a.b", false),
        Ok((r"a\x{2E}b".to_owned(), true))
    );
}

#[test]
fn regex_crate_syntax_keeps_its_postgres_meaning() {
    // `\b` is a backspace in PostgreSQL, not a word boundary; `\B` a backslash.
    assert!(re(r"a\bb", "a\u{8}b"));
    assert!(!re(r"\bcat", "cat"));
    assert!(re(r"^[\b]$", "\u{8}"));
    assert!(re(r"a\Bb", r"a\b"));
    // `$`, `\Z` and `^` are the ends of the string, not of a line.
    assert!(!re("a$", "a\n"));
    assert!(!re(r"a\Z", "a\n"));
    assert!(re("a\n$", "a\n"));
    assert!(!re("^b", "a\nb"));
    assert!(!re("a$", "a\nb"));
    // The crate's operators are literals (or errors) here.
    assert!(re(r"\<a\>", "<a>"));
    assert!(!re(r"\<a\>", "a"));
    assert!(re("^[&~]+$", "&&~~"));
    assert!(re("^[--/]+$", "-./"));
    assert!(re("^a b#c$", "a b#c"));
    assert!(re("^[[]$", "["));
    assert!(re(r"^\x28\x7b$", "({"));
    assert!(re(r"^\0\cA$", "\0\u{1}"));
    assert!(re("***=(?i)A", "x(?i)A"));
    assert!(!re("***=(?i)A", "a"));
    assert!(re("***=\\p{L}$", "\\p{L}$"));
    assert!(
        re(r"^\b{start}x$", "\u{8}{start}x"),
        "`{{` before a letter is literal"
    );
    // What the crate would read with another meaning, or PostgreSQL does not support,
    // is rejected.
    for pattern in [
        r"\p{L}", r"\P{L}", r"[\p{L}]", r"\k<a>", r"\z", r"\h", "a(?i)b", "(?i", "((?i)a)",
        "(?P<n>a)", "(?<n>a)", "(?<=a)b", "(?<!a)b", "(?x)a b", "(?n)a", "(?s-i)a", r"[\m]",
        r"[\A]", r"[a-\d]", r"\x{41}", r"\uD800",
    ] {
        match error(&format!("v=match.\"{}\"", pattern.replace('\\', r"\\"))) {
            FilterError::InvalidRegex { pattern: got, .. } => assert_eq!(got, pattern),
            other => panic!("{pattern:?}: {other:?}"),
        }
    }
}

#[test]
fn regex_word_boundaries_are_unicode() {
    assert!(re(r"\mété\M", "un été chaud"));
    assert!(!re(r"\mté", "été"));
    assert!(re(r"\yx\y", "x"));
    assert!(re(r"a\Yb", "ab"));
    assert!(!re(r"a\Y b", "a b"));
    assert!(re(r"\M$", "word"));
    assert!(!re(r"\m$", "word"));
    assert!(re(r"^\w+$", "naïve_1"));
    assert!(re(r"^[[:word:]]+$", "naïve_1"));
    assert!(re(r"^\W$", "-"));
}

#[test]
fn regex_classes_are_unicode_where_postgres_s_are() {
    assert!(re("^[[:alpha:]]+$", "Ωμέγα"));
    assert!(!re("^[[:alpha:]]$", "1"));
    assert!(re("^[[:alnum:]]+$", "x²½Ⅻ"));
    assert!(re("^[[:upper:]]+$", "ÉΩ"));
    assert!(re("^[[:lower:]]+$", "éω"));
    assert!(re("^[[:space:]]+$", "\u{2003}\n\t"));
    assert!(re(r"^\s$", "\u{a0}"));
    assert!(re("^[[:blank:]]+$", " \t"));
    assert!(!re("^[[:blank:]]$", "\n"));
    assert!(re("^[[:cntrl:]]$", "\u{7f}"));
    assert!(re("^[[:graph:]]+$", "a-é"));
    assert!(!re("^[[:graph:]]$", " "));
    assert!(re("^[[:print:]]+$", "a é"));
    assert!(!re("^[[:print:]]$", "\u{1}"));
    // ASCII only, as documented.
    assert!(!re(r"^\d$", "٣"));
    assert!(!re("^[[:digit:]]$", "٣"));
    assert!(!re("^[[:punct:]]$", "¿"));
    assert!(!re("^[[:xdigit:]]$", "g"));
    // Negated escapes inside brackets.
    assert!(re(r"^[\D]+$", "ab"));
    assert!(!re(r"^[\D]+$", "a1"));
    assert!(re(r"^[^\W]+$", "abc"));
    assert!(!re(r"^[^\W]+$", "a-c"));
    assert!(re(r"^[\S\s]+$", "any thing"));
}

#[test]
fn imatch_folds_case_simply() {
    assert!(ire("^k$", "\u{212A}"), "the Kelvin sign folds to k");
    assert!(ire("^[[:lower:]]+$", "ABC"));
    assert!(ire("^σ$", "Σ"));
    assert!(ire("^ς$", "Σ"));
    assert!(!ire("^ss$", "ß"), "simple folding only");
    assert!(ire(r"^\x41$", "a"));
    assert!(ire("***=A.B", "a.b"));
}

#[test]
fn deeply_nested_quantified_groups_stay_within_the_crate_s_limits() {
    let pattern = format!("{}[[:graph:]\\D\\W]{}", "(".repeat(100), ")*".repeat(100));
    assert!(passes(&format!("v=match.{pattern}"), json!("x")));
}
