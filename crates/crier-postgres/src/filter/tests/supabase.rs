//! Supabase's error texts and its inspection of conditions.

use super::*;

#[test]
fn supabase_error_texts() {
    let message = |text: &str| supabase_error_message(text);
    assert_eq!(message("foo"), r#"Error parsing `filter` params: ["foo"]"#);
    assert_eq!(
        message("undefined"),
        r#"Error parsing `filter` params: ["undefined"]"#
    );
    assert_eq!(
        message("wrong"),
        r#"Error parsing `filter` params: ["wrong"]"#
    );
    assert_eq!(
        message("subject=foo.hey"),
        r#"Error parsing `filter` params: ["foo", "hey"]"#
    );
    assert_eq!(
        message("foo=hey"),
        r#"Error parsing `filter` params: ["hey"]"#
    );
    assert_eq!(message("id=eq"), r#"Error parsing `filter` params: ["eq"]"#);
    assert_eq!(
        message("id=not.eq"),
        r#"Error parsing `filter` params: ["eq"]"#
    );
    assert_eq!(
        message("id=not.not.eq.5"),
        r#"Error parsing `filter` params: ["not", "eq.5"]"#
    );
    assert_eq!(message("id="), r#"Error parsing `filter` params: [""]"#);
    assert_eq!(
        message("id=.5"),
        r#"Error parsing `filter` params: ["", "5"]"#
    );
    assert_eq!(
        message("  foo  "),
        r#"Error parsing `filter` params: ["foo"]"#
    );
    assert_eq!(
        message("id=gt.0,id=foo.100"),
        r#"Error parsing `filter` params: ["foo", "100"]"#
    );
    assert_eq!(
        message("a=eq.1,,b=eq.2"),
        "Error parsing `filter` params: filter must not contain empty segments (check for extra commas)"
    );
    assert_eq!(
        message("id=gt.0,"),
        "Error parsing `filter` params: filter must not contain empty segments (check for extra commas)"
    );
    assert_eq!(
        message("id=in.1"),
        "Error parsing `filter` params: `in` filter value must be wrapped by parentheses"
    );
    // The first failing condition decides.
    assert_eq!(message("id=in.1,foo"), message("id=in.1"));
    assert_eq!(message("foo,id=in.1"), message("foo"));
}

#[test]
fn supabase_error_texts_escape_like_elixir_inspect() {
    let message = |text: &str| supabase_error_message(text);
    assert_eq!(
        message(r#"a"b"#),
        r#"Error parsing `filter` params: ["a\"b"]"#
    );
    assert_eq!(
        message(r"a\b"),
        r#"Error parsing `filter` params: ["a\\b"]"#
    );
    assert_eq!(
        message("x#{y}"),
        r#"Error parsing `filter` params: ["x\#{y}"]"#
    );
    assert_eq!(
        message("x#y{"),
        r#"Error parsing `filter` params: ["x#y{"]"#
    );
    assert_eq!(
        message("a\tb\u{7}c\u{1b}d\u{7f}"),
        r#"Error parsing `filter` params: ["a\tb\ac\ed\d"]"#
    );
    assert_eq!(
        message("x=a\nb.c"),
        r#"Error parsing `filter` params: ["a\nb", "c"]"#
    );
    assert_eq!(
        message("héllo wörld"),
        r#"Error parsing `filter` params: ["héllo wörld"]"#
    );
    assert_eq!(
        message("a\u{a0}b\u{200b}"),
        r#"Error parsing `filter` params: ["a\u00A0b\u200B"]"#
    );
    // Not printable: a binary, bytes shown up to the inspect limit.
    assert_eq!(
        message("a\u{1}"),
        "Error parsing `filter` params: [<<97, 1>>]"
    );
    assert_eq!(
        message("x=\u{0}.\u{1}"),
        "Error parsing `filter` params: [<<0>>, <<1>>]"
    );
    let long = format!("{}\u{1}", "a".repeat(60));
    let mut bytes: Vec<String> = vec!["97".to_owned(); 49];
    bytes.push("...".to_owned());
    assert_eq!(
        message(&long),
        format!("Error parsing `filter` params: [<<{}>>]", bytes.join(", "))
    );
    let long_op = format!("x={}.\u{1}", "\u{2}".repeat(48));
    assert_eq!(
        message(&long_op),
        format!(
            "Error parsing `filter` params: [<<{}>>, <<...>>]",
            vec!["2"; 48].join(", ")
        )
    );
    let much_longer_op = format!("x={}.y", "\u{2}".repeat(49));
    assert_eq!(
        message(&much_longer_op),
        format!(
            "Error parsing `filter` params: [<<{}>>, ...]",
            vec!["2"; 49].join(", ")
        )
    );
    // Printable strings over 4096 characters are cut.
    let huge = "b".repeat(5000);
    assert_eq!(
        message(&huge),
        format!(
            "Error parsing `filter` params: [\"{}\" <> ...]",
            "b".repeat(4096)
        )
    );
}

#[test]
fn supabase_error_texts_fall_back_to_ours() {
    assert_eq!(
        supabase_error_message("v=is.maybe"),
        "Error parsing `filter` params: invalid value `maybe` for `is` filter: must be null, true, false or unknown"
    );
    assert_eq!(
        supabase_error_message("=eq.1"),
        "Error parsing `filter` params: filter condition `=eq.1` has no column before `=`"
    );
    assert!(
        supabase_error_message("id=in.(1,,2)")
            .starts_with("Error parsing `filter` params: `in` filter value `(1,,2)` is malformed")
    );
    assert_eq!(
        supabase_error_message("id=eq.1"),
        r#"Error parsing `filter` params: ["id=eq.1"]"#
    );
}

#[test]
fn conditions_are_inspected_as_elixir_tuples() {
    assert_eq!(supabase_inspect_conditions(""), "[]");
    assert_eq!(
        supabase_inspect_conditions("id=eq.1"),
        r#"[{"id", "eq", "1"}]"#
    );
    assert_eq!(
        supabase_inspect_conditions(r#"a=not.in.(1,2),b=like."x"#),
        r#"[{"a", "not.in", "(1,2)"}, {"b", "like", "\"x"}]"#
    );
}
