//! JSON from clients, nested as deeply as Supabase Realtime accepts.
//!
//! serde_json refuses documents nested deeper than 128 levels, to protect its recursive
//! parser's stack. Supabase Realtime accepts deeper payloads, and apps send them (a
//! document tree, a chat thread as nested replies), so a frame that works there must
//! work here. [`from_slice`] parses as serde_json does, and only when that fails on the
//! nesting limit measures the depth with a flat scan (no recursion, any input) and parses
//! again without serde_json's limit when the document is within [`MAX_DEPTH`]. Deeper
//! documents are refused with [`JsonError::TooDeep`]. That second parse runs through
//! `serde_stacker`, which moves the parser onto a fresh heap-allocated stack segment
//! when the thread's stack runs low, so no depth overflows a stack however small the
//! thread's; bounding the depth before parsing keeps every later recursive walk of the
//! value (serializing, comparing, dropping) within ordinary stacks too.

use serde::Deserialize;
use serde_json::value::RawValue;

/// Deepest nesting accepted in a JSON document from a client, counting every array and
/// object level of the whole document (a 2.0.0 frame adds one level around its
/// payload, a broadcast another), so payloads of 512 levels and more get through.
pub const MAX_DEPTH: usize = 1000;

/// Why JSON from a client was refused.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// Not JSON, or not of the expected shape.
    #[error("{0}")]
    Invalid(#[from] serde_json::Error),
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("JSON nested {depth} levels deep; at most {MAX_DEPTH} are accepted")]
    TooDeep {
        /// The document's depth.
        depth: usize,
    },
}

/// Parses `bytes` as a `T`, accepting nesting up to [`MAX_DEPTH`] levels.
pub fn from_slice<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, JsonError> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(err) if is_nesting_limit(&err) => {
            deep(serde_json::Deserializer::from_slice(bytes), bytes)
        }
        Err(err) => Err(JsonError::Invalid(err)),
    }
}

/// Parses `text` as a `T`, accepting nesting up to [`MAX_DEPTH`] levels. Cheaper than
/// [`from_slice`] on text already known to be UTF-8: strings are not checked again.
pub fn from_str<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, JsonError> {
    match serde_json::from_str(text) {
        Ok(value) => Ok(value),
        Err(err) if is_nesting_limit(&err) => {
            deep(serde_json::Deserializer::from_str(text), text.as_bytes())
        }
        Err(err) => Err(JsonError::Invalid(err)),
    }
}

/// The second parse, for a document serde_json found too deep: measured first, then
/// parsed without serde_json's limit on a stack that grows as needed.
fn deep<'a, R, T>(
    mut deserializer: serde_json::Deserializer<R>,
    bytes: &[u8],
) -> Result<T, JsonError>
where
    R: serde_json::de::Read<'a>,
    T: Deserialize<'a>,
{
    let depth = nesting_depth(bytes);
    if depth > MAX_DEPTH {
        return Err(JsonError::TooDeep { depth });
    }
    deserializer.disable_recursion_limit();
    let value = T::deserialize(serde_stacker::Deserializer::new(&mut deserializer))?;
    deserializer.end()?;
    Ok(value)
}

/// Parses `bytes` as one JSON value kept as text (to forward without re-encoding),
/// refusing nesting deeper than [`MAX_DEPTH`] as [`from_slice`] does. serde_json skims a
/// raw value without its nesting limit, so the depth is measured here, and only for a
/// document long enough to be that deep.
pub fn raw_from_slice(bytes: &[u8]) -> Result<&RawValue, JsonError> {
    let raw: &RawValue = from_slice(bytes)?;
    if bytes.len() > 2 * MAX_DEPTH {
        let depth = nesting_depth(bytes);
        if depth > MAX_DEPTH {
            return Err(JsonError::TooDeep { depth });
        }
    }
    Ok(raw)
}

/// serde_json does not expose its error codes; its message for this one is stable.
fn is_nesting_limit(err: &serde_json::Error) -> bool {
    err.is_syntax() && err.to_string().starts_with("recursion limit exceeded")
}

/// The deepest nesting of arrays and objects in `bytes`, read as JSON text (brackets
/// inside strings do not count). Meaningful for valid JSON; bounded work for anything.
pub fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn shallow_documents_parse_as_serde_json_parses_them() {
        let value: Value = from_str(r#"{"a":[1,{"b":"[{"}]}"#).unwrap();
        assert_eq!(value["a"][1]["b"], "[{");
        assert!(matches!(from_str::<Value>("{"), Err(JsonError::Invalid(_))));
    }

    #[test]
    fn nesting_up_to_the_maximum_is_accepted() {
        for depth in [129, 512, MAX_DEPTH] {
            let value: Value = from_str(&nested(depth)).unwrap();
            let mut level = &value;
            for _ in 0..depth {
                level = &level[0];
            }
            assert_eq!(level, &Value::from(1), "depth {depth}");
        }
    }

    #[test]
    fn deeper_nesting_is_refused_without_recursing() {
        let err = from_str::<Value>(&nested(MAX_DEPTH + 1)).unwrap_err();
        assert!(matches!(err, JsonError::TooDeep { depth } if depth == MAX_DEPTH + 1));
        assert_eq!(
            err.to_string(),
            "JSON nested 1001 levels deep; at most 1000 are accepted"
        );
        // A million open brackets: measured by the flat scan, never parsed.
        let err = from_str::<Value>(&"[".repeat(1_000_000)).unwrap_err();
        assert!(matches!(err, JsonError::TooDeep { .. }));
    }

    #[test]
    fn raw_values_are_held_to_the_same_depth() {
        let deep = nested(MAX_DEPTH);
        assert_eq!(raw_from_slice(deep.as_bytes()).unwrap().get(), deep);
        let deeper = nested(MAX_DEPTH + 1);
        assert!(matches!(
            raw_from_slice(deeper.as_bytes()),
            Err(JsonError::TooDeep { .. })
        ));
        assert!(matches!(raw_from_slice(b"[1,"), Err(JsonError::Invalid(_))));
    }

    #[test]
    fn brackets_in_strings_and_escapes_do_not_count() {
        assert_eq!(nesting_depth(br#"["[[[\"[[", {"k": "}}}"}]"#), 2);
        assert_eq!(nesting_depth(b"1"), 0);
    }
}
