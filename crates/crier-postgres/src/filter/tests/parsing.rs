//! The grammar: operators, values, lists, quotes and parentheses, and errors.

use super::*;

#[test]
fn parses_every_comparison_operator() {
    for (name, op) in [
        ("eq", CompareOp::Eq),
        ("neq", CompareOp::Neq),
        ("lt", CompareOp::Lt),
        ("lte", CompareOp::Lte),
        ("gt", CompareOp::Gt),
        ("gte", CompareOp::Gte),
    ] {
        assert_eq!(
            only(&format!("id={name}.5")),
            ("id".to_owned(), false, cmp(op, "5"))
        );
        assert_eq!(
            only(&format!("id=not.{name}.5")),
            ("id".to_owned(), true, cmp(op, "5"))
        );
    }
}

#[test]
fn parses_in_is_isdistinct_like_match() {
    assert_eq!(
        only("id=in.(1,2,3)").2,
        items(&[Some("1"), Some("2"), Some("3")])
    );
    assert!(only("id=not.in.(1)").1);
    assert_eq!(only("v=is.null").2, Test::Is(IsValue::Null));
    assert_eq!(only("v=is.true").2, Test::Is(IsValue::True));
    assert_eq!(only("v=is.false").2, Test::Is(IsValue::False));
    assert_eq!(only("v=is.unknown").2, Test::Is(IsValue::Unknown));
    assert_eq!(
        only("v=not.is.null"),
        ("v".to_owned(), true, Test::Is(IsValue::Null))
    );
    assert_eq!(only("v=isdistinct.5").2, Test::IsDistinct("5".to_owned()));
    assert!(matches!(
        only("v=like.a%").2,
        Test::Like(LikePattern {
            case_insensitive: false,
            ..
        })
    ));
    assert!(matches!(
        only("v=ilike.a%").2,
        Test::Like(LikePattern {
            case_insensitive: true,
            ..
        })
    ));
    assert!(matches!(
        only("v=match.^a").2,
        Test::Regex(Regex {
            case_insensitive: false,
            ..
        })
    ));
    assert!(matches!(
        only("v=imatch.^a").2,
        Test::Regex(Regex {
            case_insensitive: true,
            ..
        })
    ));
    assert!(only("v=not.like.a%").1);
    assert!(only("v=not.isdistinct.a").1);
}

#[test]
fn the_value_is_everything_after_the_operator() {
    assert_eq!(only("a=eq.b=c.d").2, cmp(CompareOp::Eq, "b=c.d"));
    assert_eq!(only("a=eq.").2, cmp(CompareOp::Eq, ""));
    assert_eq!(
        only("a=eq. x ").2,
        cmp(CompareOp::Eq, " x"),
        "the condition is trimmed"
    );
    assert_eq!(only("a=eq.not.x").2, cmp(CompareOp::Eq, "not.x"));
    assert_eq!(
        only("a=eq.O'Brien \"x\"").2,
        cmp(CompareOp::Eq, "O'Brien \"x\"")
    );
}

#[test]
fn the_column_is_verbatim() {
    assert_eq!(only("my col=eq.1").0, "my col");
    assert_eq!(
        only("a =eq.1").0,
        "a ",
        "only the condition as a whole is trimmed"
    );
    assert_eq!(only("  id=eq.1  ").0, "id");
    assert_eq!(only("\"Id\"=eq.1").0, "\"Id\"");
    assert_eq!(only("a.b=eq.1").0, "a.b");
}

#[test]
fn empty_filters_have_no_conditions_and_pass_every_row() {
    for text in ["", "   ", "\n\t"] {
        let filter = parse(text);
        assert!(filter.conditions.is_empty());
        assert!(filter.columns().is_empty());
        assert!(filter.matches(&Map::new()));
    }
}

// ----- parsing: lists, quotes, parentheses

#[test]
fn commas_join_conditions() {
    let all = conditions("status=eq.open,priority=gt.2, id=not.in.(1,2) ");
    assert_eq!(
        all,
        vec![
            ("status".to_owned(), false, cmp(CompareOp::Eq, "open")),
            ("priority".to_owned(), false, cmp(CompareOp::Gt, "2")),
            ("id".to_owned(), true, items(&[Some("1"), Some("2")])),
        ]
    );
    assert_eq!(conditions("id=gt.0,id=lt.100").len(), 2);
    assert_eq!(
        conditions("name=in.(red,blue),quantity=gt.0")[0].2,
        items(&[Some("red"), Some("blue")])
    );
}

#[test]
fn a_quoted_value_keeps_its_commas_and_is_unquoted() {
    assert_eq!(
        conditions("name=eq.\"a,b\",id=gt.0"),
        vec![
            ("name".to_owned(), false, cmp(CompareOp::Eq, "a,b")),
            ("id".to_owned(), false, cmp(CompareOp::Gt, "0")),
        ]
    );
    assert_eq!(
        only("name=eq.\"a.b:c(d)\"").2,
        cmp(CompareOp::Eq, "a.b:c(d)")
    );
    assert_eq!(
        only("name=not.neq.\"a,b\""),
        ("name".to_owned(), true, cmp(CompareOp::Neq, "a,b"))
    );
    assert_eq!(only("name=eq.\"\"").2, cmp(CompareOp::Eq, ""));
    assert_eq!(only("name=eq.\" a \"").2, cmp(CompareOp::Eq, " a "));
}

#[test]
fn backslashes_escape_inside_quoted_values() {
    assert_eq!(
        only(r#"name=eq."she said \"hi\"""#).2,
        cmp(CompareOp::Eq, "she said \"hi\"")
    );
    assert_eq!(
        only(r#"path=eq."C:\\tmp""#).2,
        cmp(CompareOp::Eq, r"C:\tmp")
    );
    assert_eq!(only(r#"path=eq."C:\new""#).2, cmp(CompareOp::Eq, "C:new"));
    assert_eq!(
        conditions(r#"a=eq."x\,y",b=eq.1"#)[0].2,
        cmp(CompareOp::Eq, "x,y")
    );
    // Outside quotes a backslash is an ordinary character.
    assert_eq!(only(r"a=eq.x\y").2, cmp(CompareOp::Eq, r"x\y"));
}

#[test]
fn malformed_quoted_values_are_taken_verbatim_like_postgrest() {
    assert_eq!(
        only("name=eq.\"unterminated").2,
        cmp(CompareOp::Eq, "\"unterminated")
    );
    assert_eq!(only("name=eq.\"ab\"cd").2, cmp(CompareOp::Eq, "\"ab\"cd"));
    assert_eq!(only(r#"name=eq."ab\"#).2, cmp(CompareOp::Eq, r#""ab\"#));
    // An unterminated quote keeps the following commas in the value.
    assert_eq!(only("a=eq.\"x,b=eq.1").2, cmp(CompareOp::Eq, "\"x,b=eq.1"));
}

#[test]
fn a_quote_inside_a_value_does_not_protect_commas() {
    assert_eq!(
        conditions("desc=eq.5\" tall,id=gt.0"),
        vec![
            ("desc".to_owned(), false, cmp(CompareOp::Eq, "5\" tall")),
            ("id".to_owned(), false, cmp(CompareOp::Gt, "0")),
        ]
    );
}

#[test]
fn parentheses_protect_commas_and_stray_closing_ones_are_literal() {
    assert_eq!(
        conditions("a=eq.x),b=eq.y),c=eq.z"),
        vec![
            ("a".to_owned(), false, cmp(CompareOp::Eq, "x)")),
            ("b".to_owned(), false, cmp(CompareOp::Eq, "y)")),
            ("c".to_owned(), false, cmp(CompareOp::Eq, "z")),
        ]
    );
    assert_eq!(only("a=eq.f(x,y)").2, cmp(CompareOp::Eq, "f(x,y)"));
    // An unclosed `(` keeps every following comma.
    assert_eq!(only("a=eq.x(,b=eq.1").2, cmp(CompareOp::Eq, "x(,b=eq.1"));
}

#[test]
fn in_lists_read_as_postgres_array_literals() {
    assert_eq!(only("t=in.(\"a,b\",c)").2, items(&[Some("a,b"), Some("c")]));
    assert_eq!(
        only("t=in.(\"a,b\",\"c,d\")").2,
        items(&[Some("a,b"), Some("c,d")])
    );
    assert_eq!(
        only("t=in.( a , b c ,d)").2,
        items(&[Some("a"), Some("b c"), Some("d")])
    );
    assert_eq!(only("t=in.(\" a \")").2, items(&[Some(" a ")]));
    assert_eq!(
        only("t=in.(\"(x)\",\")\")").2,
        items(&[Some("(x)"), Some(")")])
    );
    assert_eq!(
        only("t=in.(\"\",\"NULL\",NULL,null)").2,
        items(&[Some(""), Some("NULL"), None, None])
    );
    assert_eq!(
        only(r"t=in.(a\,b,c\ )").2,
        items(&[Some("a,b"), Some("c ")])
    );
    assert_eq!(
        only(r#"t=in.("say \"hi\"",x)"#).2,
        items(&[Some("say \"hi\""), Some("x")])
    );
    assert_eq!(
        only("t=in.(a\"b,c\"d)").2,
        items(&[Some("ab,cd")]),
        "quotes may start mid-item"
    );
    assert_eq!(
        only("t=in.(O'Brien,Smith)").2,
        items(&[Some("O'Brien"), Some("Smith")])
    );
    assert_eq!(only("t=in.(1.5,2)").2, items(&[Some("1.5"), Some("2")]));
    assert_eq!(only("t=in.()").2, items(&[]));
    assert_eq!(only("t=in.( )").2, items(&[]));
    assert_eq!(only("t=in.(f(x),y)").2, items(&[Some("f(x)"), Some("y")]));
    let hundred: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let Test::In(list) = only(&format!("t=in.({})", hundred.join(","))).2 else {
        panic!("an in list");
    };
    assert_eq!(list.len(), 100);
}

#[test]
fn columns_are_listed_once_in_order() {
    assert_eq!(parse("b=eq.1,a=gt.2,b=lt.9").columns(), vec!["b", "a"]);
    assert_eq!(parse("id=eq.1").columns(), vec!["id"]);
}

// ----- parsing: errors

#[test]
fn empty_conditions_are_errors() {
    for text in [
        "a=eq.1,",
        ",a=eq.1",
        "a=eq.1,,b=eq.2",
        "a=eq.1, ,b=eq.2",
        ",",
    ] {
        assert_eq!(error(text), FilterError::EmptyCondition, "{text:?}");
    }
}

#[test]
fn structural_errors() {
    assert_eq!(
        error("foo"),
        FilterError::MissingEquals {
            condition: "foo".into()
        }
    );
    assert_eq!(
        error("a=eq.1,undefined"),
        FilterError::MissingEquals {
            condition: "undefined".into()
        }
    );
    assert_eq!(
        error("=eq.1"),
        FilterError::EmptyColumn {
            condition: "=eq.1".into()
        }
    );
    assert_eq!(
        error("id=eq"),
        FilterError::MissingOperator {
            condition: "id=eq".into()
        }
    );
    assert_eq!(
        error("id=5"),
        FilterError::MissingOperator {
            condition: "id=5".into()
        }
    );
    assert_eq!(
        error("id=not.eq"),
        FilterError::MissingOperator {
            condition: "id=not.eq".into()
        }
    );
    assert_eq!(
        error("id="),
        FilterError::MissingOperator {
            condition: "id=".into()
        }
    );
}

#[test]
fn unknown_operators_are_errors() {
    for (text, operator) in [
        ("id=foo.5", "foo"),
        ("id=EQ.5", "EQ"),
        ("id=not.not.eq.5", "not"),
        ("id=.5", ""),
        ("id=cs.{1}", "cs"),
        ("id=fts.x", "fts"),
    ] {
        assert_eq!(
            error(text),
            FilterError::UnknownOperator {
                operator: operator.into()
            },
            "{text:?}"
        );
    }
}

#[test]
fn in_list_errors() {
    assert_eq!(
        error("id=in.1"),
        FilterError::InNotParenthesized { value: "1".into() }
    );
    assert_eq!(
        error("id=in.(1,2"),
        FilterError::InNotParenthesized {
            value: "(1,2".into()
        }
    );
    assert_eq!(
        error("id=in.1,2)"),
        FilterError::InNotParenthesized { value: "1".into() }
    );
    assert_eq!(
        error("id=in.{1,2}"),
        FilterError::InNotParenthesized { value: "{1".into() }
    );
    for (text, reason) in [
        ("id=in.(1,,2)", "empty value"),
        ("id=in.(1,)", "empty value"),
        ("id=in.(,1)", "empty value"),
        ("id=in.(\"a)", "unterminated double quote"),
        ("id=in.({1},{2})", "nested"),
        ("id=in.(a})", "unexpected `}`"),
        (r"id=in.(a\)", "backslash"),
    ] {
        match error(text) {
            FilterError::MalformedInList { reason: got, .. } => {
                assert!(got.contains(reason), "{text:?}: {got}");
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    let many: Vec<String> = (0..101).map(|i| i.to_string()).collect();
    assert_eq!(
        error(&format!("id=in.({})", many.join(","))),
        FilterError::TooManyInValues { count: 101 }
    );
}

#[test]
fn is_like_and_regex_errors() {
    for value in ["maybe", "NULL", "True", "", "nil"] {
        assert_eq!(
            error(&format!("v=is.{value}")),
            FilterError::InvalidIsValue {
                value: value.into()
            }
        );
    }
    assert_eq!(only("v=is.\"null\"").2, Test::Is(IsValue::Null));
    assert_eq!(
        error(r"v=like.abc\"),
        FilterError::InvalidLikePattern {
            pattern: r"abc\".into()
        }
    );
    assert!(matches!(
        error(r"v=ilike.\"),
        FilterError::InvalidLikePattern { .. }
    ));
    for pattern in [
        "(a",
        "a)",
        "[a",
        "*a",
        "a**",
        "a{256}",
        r"(a)\1",
        "(?=a)",
        "(?!a)",
        "a|*",
        "\"a{2,1}\"",
        "\"a{1,256}\"",
        "[[:nope:]]",
        "[z-a]",
        r"\q",
        r"a\",
        "^*",
        "(?x)a",
        "a{1",
    ] {
        match error(&format!("v=match.{pattern}")) {
            FilterError::InvalidRegex { pattern: got, .. } => {
                assert_eq!(got, unquote_value(pattern));
            }
            other => panic!("{pattern:?}: {other:?}"),
        }
    }
}

#[test]
fn error_texts_name_the_problem() {
    assert_eq!(
        error("foo").to_string(),
        "filter condition `foo` has no `=`: expected `column=operator.value`, e.g. `id=eq.5`"
    );
    assert_eq!(
        error("id=foo.1").to_string(),
        "unknown filter operator `foo`: expected one of eq, neq, lt, lte, gt, gte, in, like, ilike, match, imatch, is, isdistinct, optionally after `not.`"
    );
    assert_eq!(
        error("a=eq.1,").to_string(),
        "filter must not contain empty conditions (check for extra commas)"
    );
    assert_eq!(
        error("=eq.1").to_string(),
        "filter condition `=eq.1` has no column before `=`"
    );
    assert_eq!(
        error("id=eq").to_string(),
        "filter condition `id=eq` has no `operator.value` after `=`: expected `column=operator.value`, e.g. `id=eq.5`"
    );
    assert_eq!(
        error("id=in.1").to_string(),
        "`in` filter value must be wrapped in parentheses, e.g. `in.(1,2,3)`; got `1`"
    );
    assert_eq!(
        error("id=in.(1,,2)").to_string(),
        "`in` filter value `(1,,2)` is malformed: it has an empty value (quote it, `\"\"`, to mean the empty string)"
    );
    let many: Vec<String> = (0..150).map(|i| i.to_string()).collect();
    assert_eq!(
        error(&format!("id=in.({})", many.join(","))).to_string(),
        "too many values for `in` filter: 150; at most 100 are allowed"
    );
    assert_eq!(
        error("v=is.maybe").to_string(),
        "invalid value `maybe` for `is` filter: must be null, true, false or unknown"
    );
    assert_eq!(
        error(r"v=like.a\").to_string(),
        r"invalid LIKE pattern `a\`: it must not end with the escape character `\`"
    );
    assert_eq!(
        error("v=match.(a").to_string(),
        "invalid regular expression `(a`: parentheses () not balanced"
    );
}
