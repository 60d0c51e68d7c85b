//! Matching: every operator on every kind of row value, with three-valued logic.

use super::*;

#[test]
fn numbers_compare_numerically_and_exactly() {
    assert!(passes("v=eq.5", json!(5)));
    assert!(passes("v=eq.5.0", json!(5)));
    assert!(passes("v=eq.5", json!(5.0)));
    assert!(passes("v=eq.5e0", json!(5)));
    assert!(passes("v=eq.0.5e1", json!(5)));
    assert!(passes("v=eq. 5 ", json!(5)));
    assert!(passes("v=eq.+5", json!(5)));
    assert!(passes("v=eq.005.000", json!(5)));
    assert!(passes("v=eq.-0", json!(0)));
    assert!(passes("v=eq.0", json!(-0.0)));
    assert!(passes("v=eq..5", json!(0.5)));
    assert!(passes("v=eq.5.", json!(5)));
    assert!(!passes("v=eq.6", json!(5)));
    assert!(passes("v=neq.6", json!(5)));
    assert!(!passes("v=neq.5.0", json!(5)));
    assert!(passes("v=eq.0.1", json!(0.1)));
    assert!(passes("v=eq.-2.5", json!(-2.5)));
    assert!(passes("v=eq.1e20", json!(1e20)));
    assert!(passes("v=eq.100000000000000000000", json!(1e20)));
    // Integers are exact at the limits of i64 and u64.
    assert!(passes("v=eq.9223372036854775807", json!(i64::MAX)));
    assert!(!passes("v=eq.9223372036854775806", json!(i64::MAX)));
    assert!(passes("v=eq.-9223372036854775808", json!(i64::MIN)));
    assert!(passes("v=eq.18446744073709551615", json!(u64::MAX)));
    assert!(passes("v=lt.18446744073709551616", json!(u64::MAX)));
    assert!(passes(
        "v=gt.18446744073709551614.999999999999",
        json!(u64::MAX)
    ));
    assert!(passes(
        "v=gt.9007199254740992",
        json!(9_007_199_254_740_993_i64)
    ));
}

#[test]
fn number_order() {
    assert!(passes("v=lt.10", json!(9)));
    assert!(!passes("v=lt.9", json!(9)));
    assert!(passes("v=lte.9", json!(9)));
    assert!(passes("v=gt.-1", json!(0)));
    assert!(passes("v=gte.0", json!(0)));
    assert!(passes("v=gt.-10", json!(-9)));
    assert!(passes("v=lt.-8.5", json!(-9)));
    assert!(passes("v=lt.2", json!(1.999_999)));
    assert!(passes("v=gt.1e-400", json!(0.000_1)));
    assert!(passes("v=lt.1e400", json!(f64::MAX)));
    assert!(passes("v=gt.-1e400", json!(f64::MIN)));
    assert!(passes("v=gt.0.09999999999999999", json!(0.1)));
    assert!(passes("v=lt.10e-1", json!(0.99)));
    assert!(passes("v=gt.10e-1", json!(1.01)));
}

#[test]
fn special_numeric_literals_order_as_postgres() {
    assert!(passes("v=lt.Infinity", json!(1e300)));
    assert!(passes("v=lt.inf", json!(1)));
    assert!(passes("v=gt.-Infinity", json!(-1e300)));
    assert!(passes("v=lt.NaN", json!(1e300)));
    assert!(!passes("v=eq.NaN", json!(1)));
    assert!(passes("v=neq.nan", json!(1)));
    // `to_jsonb` renders these as strings; they compare numerically with numbers.
    assert!(passes("v=gt.1e300", json!("NaN")));
    assert!(passes("v=eq.NaN", json!("NaN")));
    assert!(passes("v=gt.5", json!("Infinity")));
    assert!(passes("v=lt.-5", json!("-Infinity")));
    assert!(passes("v=eq.-inf", json!("-Infinity")));
}

#[test]
fn a_literal_that_is_not_a_number_never_passes_a_number() {
    for filter in [
        "v=eq.abc",
        "v=neq.abc",
        "v=not.eq.abc",
        "v=lt.abc",
        "v=not.gt.x",
        "v=eq.",
        "v=eq.1_000",
        "v=eq.0x10",
        "v=eq.1e",
        "v=eq.--1",
        "v=eq.1.2.3",
        "v=eq.-nan",
    ] {
        assert!(!passes(filter, json!(5)), "{filter}");
    }
}

// ----- matching: booleans

#[test]
fn booleans_read_the_literal_as_postgres_does() {
    for literal in ["true", "t", "TRUE", "tr", "yes", "y", "on", "1", " true "] {
        assert!(passes(&format!("v=eq.{literal}"), json!(true)), "{literal}");
        assert!(
            !passes(&format!("v=eq.{literal}"), json!(false)),
            "{literal}"
        );
    }
    for literal in ["false", "f", "fal", "no", "n", "off", "of", "0", "False"] {
        assert!(
            passes(&format!("v=eq.{literal}"), json!(false)),
            "{literal}"
        );
        assert!(
            passes(&format!("v=neq.{literal}"), json!(true)),
            "{literal}"
        );
    }
    for literal in ["o", "truex", "2", "", "yess", "onn"] {
        assert!(
            !passes(&format!("v=eq.{literal}"), json!(true)),
            "{literal}"
        );
        assert!(
            !passes(&format!("v=neq.{literal}"), json!(true)),
            "{literal}"
        );
        assert!(
            !passes(&format!("v=not.eq.{literal}"), json!(false)),
            "{literal}"
        );
    }
    assert!(passes("v=lt.true", json!(false)));
    assert!(!passes("v=lt.false", json!(false)));
    assert!(passes("v=gte.false", json!(true)));
}

// ----- matching: strings

#[test]
fn strings_compare_by_bytes() {
    assert!(passes("v=eq.hello", json!("hello")));
    assert!(!passes("v=eq.Hello", json!("hello")));
    assert!(
        passes("v=eq.hello ", json!("hello")),
        "the condition is trimmed"
    );
    assert!(!passes("v=eq.hello  x", json!("hello x")));
    assert!(passes("v=eq.\"hello \"", json!("hello ")));
    assert!(passes("v=eq.", json!("")));
    assert!(passes("v=eq.5", json!("5")));
    assert!(!passes("v=eq.5.0", json!("5")), "a string is not a number");
    assert!(passes("v=neq.b", json!("a")));
    assert!(passes("v=lt.b", json!("a")));
    assert!(
        passes("v=lt.a", json!("B")),
        "C collation: uppercase before lowercase"
    );
    assert!(passes("v=gt.abc", json!("abcd")));
    assert!(passes("v=lte.abc", json!("abc")));
    assert!(passes("v=gt.z", json!("é")));
    assert!(passes("v=eq.héllo wörld", json!("héllo wörld")));
}

#[test]
fn uuids_compare_as_uuids() {
    let id = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    for literal in [
        id,
        "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
        "a0eebc999c0b4ef8bb6d6bb9bd380a11",
        "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
    ] {
        assert!(passes(&format!("v=eq.{literal}"), json!(id)), "{literal}");
    }
    assert!(!passes(
        "v=eq.a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12",
        json!(id)
    ));
    assert!(passes(
        "v=lt.B0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
        json!(id)
    ));
    assert!(passes(
        &format!("v=in.(x,{})", id.to_uppercase()),
        json!(id)
    ));
    // Not a UUID literal: compared as text.
    assert!(passes("v=gt.a0", json!(id)));
}

#[test]
fn timestamptz_compares_instants() {
    let at = json!("2026-01-02T03:04:05.678+00:00");
    assert!(passes("v=eq.2026-01-02T03:04:05.678+00:00", at.clone()));
    assert!(passes("v=eq.2026-01-02T03:04:05.678Z", at.clone()));
    assert!(
        passes("v=eq.2026-01-02 03:04:05.678", at.clone()),
        "no offset: UTC"
    );
    assert!(passes("v=eq.2026-01-02 05:04:05.678+02", at.clone()));
    assert!(passes("v=eq.2026-01-02T05:34:05.678+0230", at.clone()));
    assert!(passes("v=eq.2026-01-01T22:04:05.678-05:00", at.clone()));
    assert!(passes("v=eq.2026-01-02 03:04:05.678 +00:00", at.clone()));
    assert!(
        passes("v=eq.2026-01-02T03:04:05.6780001Z", at.clone()),
        "rounded to microseconds"
    );
    assert!(!passes("v=eq.2026-01-02T03:04:05Z", at.clone()));
    assert!(passes("v=gt.2026-01-02T03:04:05Z", at.clone()));
    assert!(passes("v=gt.2026-01-02", at.clone()));
    assert!(passes("v=lt.2026-01-03", at.clone()));
    assert!(passes("v=gte.2026-01-02T03:04", at.clone()));
    assert!(!passes(
        "v=lt.2026-01-02T04:00:00+01:00",
        json!("2026-01-02T03:30:00+00:00")
    ));
    assert!(passes(
        "v=lt.2026-01-02T04:00:00+00:30",
        json!("2026-01-02T03:29:00+00:00")
    ));
    assert!(passes(
        "v=eq.2026-01-02T03:04:05+00:00",
        json!("2026-01-02T08:34:05+05:30")
    ));
    assert!(passes(
        "v=eq.2026-01-02T03:04:05+00:00",
        json!("2026-01-02T03:23:37+00:19:32")
    ));
    assert!(passes("v=lt.infinity", at.clone()));
    assert!(passes("v=gt.-infinity", at.clone()));
    assert!(passes("v=gt.2026-01-01", json!("infinity")));
    assert!(passes("v=eq.Infinity", json!("infinity")));
    // Not a timestamp literal: compared as text.
    assert!(passes("v=gt.2026-01-02T", at.clone()));
    assert!(passes("v=lt.today", at));
}

#[test]
fn timestamps_without_zone_ignore_the_literal_offset() {
    let at = json!("2026-01-02T03:04:05.678");
    assert!(passes("v=eq.2026-01-02 03:04:05.678", at.clone()));
    assert!(passes("v=eq.2026-01-02T03:04:05.678+05:00", at.clone()));
    assert!(passes("v=gt.2026-01-02T03:04:05", at.clone()));
    assert!(passes("v=lt.2026-01-02T03:04:06", at.clone()));
    assert!(passes("v=lt.2026-01-02T03:04:05.6781", at.clone()));
    assert!(!passes(
        "v=lt.0044-03-15 BC",
        json!("0044-03-15T12:00:00 BC")
    ));
    assert!(passes(
        "v=gt.0044-03-15 BC",
        json!("0044-03-15T12:00:00 BC")
    ));
    assert!(passes("v=lt.0001-01-01", json!("0044-03-15T12:00:00 BC")));
    assert!(passes(
        "v=eq.2026-01-03 00:00",
        json!("2026-01-02T24:00:00")
    ));
}

#[test]
fn dates_compare_dates() {
    let day = json!("2026-01-02");
    assert!(passes("v=eq.2026-01-02", day.clone()));
    assert!(
        passes("v=eq.2026-01-02T23:59:59-10:00", day.clone()),
        "the time is dropped"
    );
    assert!(passes("v=lt.2026-01-03", day.clone()));
    assert!(passes("v=gt.2025-12-31", day.clone()));
    assert!(!passes("v=gt.2026-01-02 01:00", day.clone()));
    assert!(passes("v=gt.2025-02-28", json!("2025-03-01")));
    assert!(passes("v=gt.2024-02-29", json!("2024-03-01")));
    assert!(passes("v=lt.10000-01-01", json!("9999-12-31")));
    assert!(passes("v=gt.0001-01-01 BC", json!("0001-01-01")));
    // An impossible date is no date: compared as text.
    assert!(passes("v=lt.2026-02-30", day.clone()));
    assert!(!passes("v=eq.2026-1-2", day));
}

// ----- matching: null and missing columns

#[test]
fn null_passes_only_is_isdistinct_and_not_in_nothing() {
    for filter in [
        "v=eq.1",
        "v=neq.1",
        "v=not.eq.1",
        "v=not.neq.1",
        "v=lt.1",
        "v=not.lt.1",
        "v=gte.1",
        "v=in.(1,2)",
        "v=not.in.(1,2)",
        "v=in.()",
        "v=like.%",
        "v=not.like.%",
        "v=ilike.%",
        "v=match..*",
        "v=not.match.x",
        "v=eq.null",
        "v=is.true",
        "v=is.false",
        "v=not.is.null",
        "v=not.isdistinct.1",
    ] {
        assert!(!passes(filter, Value::Null), "{filter}");
    }
    for filter in [
        "v=is.null",
        "v=is.unknown",
        "v=not.is.true",
        "v=not.is.false",
        "v=isdistinct.1",
        "v=isdistinct.null",
        "v=not.in.()",
    ] {
        assert!(passes(filter, Value::Null), "{filter}");
    }
}

#[test]
fn a_missing_column_never_passes() {
    for filter in [
        "w=eq.1",
        "w=not.eq.1",
        "w=is.null",
        "w=not.is.null",
        "w=isdistinct.1",
        "w=not.in.(1)",
        "v=eq.1,w=is.null",
    ] {
        assert!(!passes_row(filter, json!({ "v": 1 })), "{filter}");
    }
    assert!(!parse("id=eq.1").matches(&Map::new()));
}

// ----- matching: in, is, isdistinct

#[test]
fn in_is_equality_with_any_item() {
    assert!(passes("v=in.(1,2,3)", json!(2)));
    assert!(passes("v=in.(1,2.0,3)", json!(2)));
    assert!(!passes("v=in.(1,3)", json!(2)));
    assert!(passes("v=not.in.(1,3)", json!(2)));
    assert!(!passes("v=not.in.(1,2)", json!(2)));
    assert!(passes("v=in.(red,blue)", json!("blue")));
    assert!(!passes("v=in.(red,blue)", json!("Blue")));
    assert!(passes("v=in.(\"a,b\",c)", json!("a,b")));
    assert!(passes("v=in.( a )", json!("a")));
    assert!(passes("v=in.(\" a \")", json!(" a ")));
    assert!(passes("v=in.(\"\")", json!("")));
    assert!(passes("v=in.(\"NULL\")", json!("NULL")));
    assert!(passes("v=in.(t)", json!(true)));
    assert!(!passes("v=in.()", json!(1)));
    assert!(passes("v=not.in.()", json!(1)));
    // `x = ANY('{1,NULL}')` is unknown when x is not 1.
    assert!(passes("v=in.(1,NULL)", json!(1)));
    assert!(!passes("v=in.(2,NULL)", json!(1)));
    assert!(!passes("v=not.in.(2,NULL)", json!(1)));
    // Items unreadable in the value's type make it unknown unless another item matches.
    assert!(passes("v=in.(x,1)", json!(1)));
    assert!(!passes("v=not.in.(x,2)", json!(1)));
}

#[test]
fn is_tests_null_and_booleans() {
    assert!(passes("v=is.true", json!(true)));
    assert!(!passes("v=is.true", json!(false)));
    assert!(passes("v=is.false", json!(false)));
    assert!(passes("v=not.is.true", json!(false)));
    assert!(!passes("v=is.unknown", json!(true)));
    assert!(passes("v=not.is.unknown", json!(false)));
    assert!(!passes("v=is.null", json!(0)));
    assert!(passes("v=not.is.null", json!("")));
    assert!(passes("v=not.is.null", json!(false)));
    // IS TRUE on a non-boolean is something Supabase refuses: never passes.
    for filter in [
        "v=is.true",
        "v=not.is.true",
        "v=is.false",
        "v=not.is.unknown",
    ] {
        assert!(!passes(filter, json!("true")), "{filter}");
        assert!(!passes(filter, json!(1)), "{filter}");
    }
}

#[test]
fn isdistinct_is_not_equal_with_null_known() {
    assert!(passes("v=isdistinct.1", json!(2)));
    assert!(!passes("v=isdistinct.1", json!(1)));
    assert!(!passes("v=isdistinct.1.0", json!(1)));
    assert!(passes("v=not.isdistinct.1", json!(1)));
    assert!(passes("v=isdistinct.a", json!("b")));
    assert!(passes("v=isdistinct.a", Value::Null));
    assert!(
        !passes("v=isdistinct.x", json!(1)),
        "unreadable literal: unknown"
    );
    assert!(!passes("v=not.isdistinct.x", json!(1)));
}

// ----- matching: like, ilike

#[test]
fn like_patterns() {
    assert!(passes("v=like.hel%", json!("hello")));
    assert!(passes("v=like.%llo", json!("hello")));
    assert!(passes("v=like.%ll%", json!("hello")));
    assert!(passes("v=like.%", json!("")));
    assert!(passes("v=like.%%", json!("x")));
    assert!(passes("v=like.h_llo", json!("hello")));
    assert!(
        passes("v=like.h_llo", json!("héllo")),
        "`_` is one character"
    );
    assert!(!passes("v=like.h_llo", json!("hllo")));
    assert!(
        !passes("v=like.hel", json!("hello")),
        "anchored at both ends"
    );
    assert!(!passes("v=like.ello", json!("hello")));
    assert!(passes("v=like.hello", json!("hello")));
    assert!(!passes("v=like.Hello", json!("hello")));
    assert!(passes("v=like.%a%b%c%", json!("xxaxxbxxcxx")));
    assert!(!passes("v=like.%a%b%c%", json!("xxcxxbxxaxx")));
    assert!(passes("v=like.a%a%a", json!("aaa")));
    assert!(!passes("v=like.a%a%a", json!("aa")));
    assert!(passes("v=like.___", json!("abc")));
    assert!(!passes("v=like.___", json!("ab")));
    assert!(passes("v=like._%_", json!("ab")));
    assert!(passes("v=not.like.hel%", json!("world")));
    assert!(!passes("v=not.like.hel%", json!("help")));
    assert!(!passes("v=like.%", json!(5)), "like on a number is unknown");
    assert!(!passes("v=not.like.x", json!(5)));
    assert!(passes("v=like.\"a,b%\"", json!("a,bc")));
}

#[test]
fn like_escapes() {
    assert!(passes(r"v=like.50\%", json!("50%")));
    assert!(!passes(r"v=like.50\%", json!("500")));
    assert!(passes(r"v=like.a\_b", json!("a_b")));
    assert!(!passes(r"v=like.a\_b", json!("axb")));
    assert!(passes(r"v=like.a\\b", json!(r"a\b")));
    assert!(passes(r"v=like.\a\b", json!("ab")));
    assert!(passes(r"v=like.%\%", json!("100%")));
}

#[test]
fn ilike_ignores_case() {
    assert!(passes("v=ilike.HEL%", json!("hello")));
    assert!(passes("v=ilike.hel%", json!("HELLO")));
    assert!(passes("v=ilike.ÉTÉ", json!("été")));
    assert!(passes("v=ilike.straße", json!("STRAßE")));
    assert!(!passes("v=ilike.hel", json!("HELLO")));
    assert!(passes(r"v=ilike.A\%", json!("a%")));
    assert!(passes("v=not.ilike.x%", json!("Y")));
}

// ----- matching: arrays and json

#[test]
fn arrays_compare_with_array_literals() {
    // Commas split the filter, so a list literal is quoted.
    assert!(passes("v=eq.\"{1,2,3}\"", json!([1, 2, 3])));
    assert!(passes("v=eq.\"{1.0, 2 ,3}\"", json!([1, 2, 3])));
    assert!(!passes("v=eq.\"{1,2}\"", json!([1, 2, 3])));
    assert!(passes("v=neq.\"{1,2}\"", json!([1, 2, 3])));
    assert!(passes("v=eq.{}", json!([])));
    assert!(passes("v=eq.{7}", json!([7])));
    assert!(passes(r#"v=eq."{a,\"b,c\"}""#, json!(["a", "b,c"])));
    assert!(passes("v=eq.\"{1,NULL}\"", json!([1, null])));
    assert!(!passes("v=eq.\"{1,2}\"", json!([1, null])));
    assert!(passes("v=eq.\"[1,2,3]\"", json!([1, 2, 3])));
    assert!(passes("v=eq.\"[1.0,2,3]\"", json!([1, 2, 3])));
    assert!(!passes("v=eq.\"[1,2]\"", json!([1, 2, 3])));
    assert!(Filter::parse("v=eq.{1,2}").is_err());
    assert!(
        !passes("v=eq.1", json!([1])),
        "not an array literal: unknown"
    );
    assert!(!passes("v=neq.1", json!([1])));
    assert!(!passes("v=lt.{2}", json!([1])), "no order on arrays");
    assert!(!passes("v=eq.{x}", json!([1])), "unreadable item: unknown");
    assert!(passes("v=in.(\"{1,2}\",\"{3}\")", json!([3])));
}

#[test]
fn json_objects_compare_as_jsonb() {
    let object = json!({ "a": 1, "b": [true, null, "x"], "c": { "d": 2.5 } });
    assert!(passes(
        r#"v=eq."{\"c\":{\"d\":2.50},\"b\":[true,null,\"x\"],\"a\":1.0}""#,
        object.clone()
    ));
    assert!(!passes(r#"v=eq.{"a":1}"#, object.clone()));
    assert!(passes(r#"v=neq.{"a":1}"#, object.clone()));
    assert!(!passes("v=eq.{not json", object.clone()));
    assert!(!passes("v=neq.{not json", object.clone()));
    assert!(!passes(r#"v=gt.{"a":0}"#, object.clone()));
    assert!(passes(r#"v=isdistinct.{"a":2}"#, object));
}

// ----- matching: several conditions

#[test]
fn every_condition_must_hold() {
    let row = json!({ "status": "open", "priority": 3, "owner": null, "tags": ["a"] });
    assert!(passes_row("status=eq.open,priority=gt.2", row.clone()));
    assert!(!passes_row("status=eq.open,priority=gt.3", row.clone()));
    assert!(passes_row(
        "status=eq.open,owner=is.null,priority=in.(1,3)",
        row.clone()
    ));
    assert!(passes_row("priority=gt.0,priority=lt.100", row.clone()));
    assert!(!passes_row("priority=gt.0,nope=lt.100", row.clone()));
    assert!(passes_row(
        "status=not.in.(closed,\"on hold\"),tags=eq.{a}",
        row
    ));
}
