//! Properties over arbitrary input: nothing panics, numbers order exactly, quoting round-trips.

use proptest::prelude::*;

use super::*;

proptest! {
    #[test]
    fn parse_never_panics(text in any::<String>()) {
        let _ = Filter::parse(&text);
        let _ = supabase_error_message(&text);
    }

    #[test]
    fn parse_never_panics_on_filter_like_text(text in r#"[a-z=.,()"\\ %_{}\[\]^$*+?|:0-9-]{0,40}"#) {
        if let Ok(filter) = Filter::parse(&text) {
            let row = json!({ "a": 1, "b": "x(y", "c": null, "d": [1, "2"], "e": { "f": true } });
            let _ = filter.matches(row.as_object().expect("an object"));
        }
        let _ = supabase_error_message(&text);
    }

    #[test]
    fn matching_never_panics(
        operator in prop::sample::select(vec![
            "eq", "neq", "lt", "lte", "gt", "gte", "like", "ilike", "match", "imatch", "isdistinct",
        ]),
        literal in "[a-z0-9 .:+T%_-]{0,24}",
        text in any::<String>(),
        number in any::<f64>(),
    ) {
        if let Ok(filter) = Filter::parse(&format!("v={operator}.{literal}")) {
            for value in [json!(text.clone()), json!(number), json!(true), Value::Null] {
                let _ = filter.matches(json!({ "v": value }).as_object().expect("an object"));
            }
        }
    }

    #[test]
    fn translated_regexes_are_valid_crate_syntax(
        pattern in r"[ab(){}\[\]^$.*+?|\\:=,0-9dDsSwWmMyYbBAZxu&~<>#-]{0,24}",
        case_insensitive in any::<bool>(),
    ) {
        // Every pattern the translator accepts compiles: the only compile error is size.
        if let Err(reason) = Regex::compile(&pattern, case_insensitive) {
            prop_assert!(!reason.contains("could not be compiled"), "{}: {}", pattern, reason);
        }
    }

    #[test]
    fn integers_order_exactly(a in any::<i64>(), b in any::<i64>()) {
        prop_assert_eq!(passes(&format!("v=lt.{b}"), json!(a)), a < b);
        prop_assert_eq!(passes(&format!("v=eq.{b}"), json!(a)), a == b);
        prop_assert_eq!(passes(&format!("v=gte.{b}.0"), json!(a)), a >= b);
    }

    #[test]
    fn floats_order_as_floats(a in -1e30f64..1e30, b in -1e30f64..1e30) {
        prop_assert_eq!(passes(&format!("v=lt.{b}"), json!(a)), a < b);
        prop_assert_eq!(passes(&format!("v=eq.{b:e}"), json!(a)), a == b);
    }

    #[test]
    fn like_without_wildcards_is_equality(text in "[a-zA-Z0-9 ]{0,12}", other in "[a-zA-Z0-9 ]{0,12}") {
        let quoted = format!("\"{text}\"");
        let like = format!("v=like.{quoted}");
        let ilike = format!("v=ilike.{quoted}");
        prop_assert!(passes(&like, json!(text.clone())));
        prop_assert_eq!(passes(&like, json!(other.clone())), text == other);
        prop_assert!(passes(&ilike, json!(text.to_uppercase())));
    }

    #[test]
    fn quoted_in_items_round_trip(values in prop::collection::vec("[a-z,() \"\\\\]{0,6}", 1..5)) {
        let quoted: Vec<String> = values
            .iter()
            .map(|v| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        let filter = format!("v=in.({})", quoted.join(","));
        let expected = Test::In(values.iter().cloned().map(Some).collect());
        prop_assert_eq!(only(&filter).2, expected);
        prop_assert!(passes(&filter, json!(values[0].clone())));
    }
}
