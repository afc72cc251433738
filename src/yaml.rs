//! YAML (and JSON, which is YAML) text decoded into JSON values within a
//! budget proportional to the text. An alias replays its anchor's whole
//! tree, so a few kilobytes of anchors and aliases can decode into
//! gigabytes ("billion laughs"); serde_yaml_ng's own limit counts aliases,
//! not what they replay, and lets a 50 KB file take a minute and 4 GB.
//! Every file a user hands the CLI (`render`'s inputs, `migrate
//! --rollback`'s file) goes through here instead.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize as _;
use serde_json::{Map, Number, Value};

/// Budget units the text may decode into per byte of text: one unit per
/// value (key, scalar, list, map) plus one per byte of every string. Text
/// without aliases never needs more than 1.5 per byte (the escape `\L` is
/// 2 bytes of text and 3 of UTF-8), so only aliases ever reach this.
pub const UNITS_PER_BYTE: usize = 2;
/// Budget units every text gets on top of [`UNITS_PER_BYTE`].
pub const BASE_UNITS: usize = 4096;

/// Why a text was not decoded.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    /// Neither YAML nor JSON, or not of the shape asked for.
    #[error("not valid YAML or JSON: {0}")]
    Syntax(#[source] serde_yaml_ng::Error),
    /// The aliases expand past the budget.
    #[error("its YAML aliases expand to more than {limit} values and string bytes (a {bytes}-byte text may decode to at most {UNITS_PER_BYTE} per byte); write it without anchors and aliases")]
    Expands { limit: usize, bytes: usize },
}

/// The budget of a text of `bytes` bytes, in units (see [`UNITS_PER_BYTE`]).
pub fn budget(bytes: usize) -> usize {
    bytes
        .saturating_mul(UNITS_PER_BYTE)
        .saturating_add(BASE_UNITS)
}

/// The budget units `value` took to decode: what [`documents`] charges.
pub fn units(value: &Value) -> usize {
    match value {
        Value::String(s) => 1 + s.len(),
        Value::Array(a) => 1 + a.iter().map(units).sum::<usize>(),
        Value::Object(m) => 1 + m.iter().map(|(k, v)| 1 + k.len() + units(v)).sum::<usize>(),
        _ => 1,
    }
}

/// The documents of `text`, in order, decoded one by one within one budget
/// shared by all of them ([`budget`] of the text's length); empty ones are
/// `null`. Ends after the first error.
pub fn documents(text: &str) -> Documents<'_> {
    Documents {
        inner: serde_yaml_ng::Deserializer::from_str(text),
        meter: Meter::new(text.len()),
        done: false,
    }
}

/// The one document of `text` (`null` when it holds none). A second
/// document is a syntax error, as for `serde_yaml_ng::from_str`.
pub fn one_document(text: &str) -> Result<Value, YamlError> {
    let meter = Meter::new(text.len());
    let result = Bounded(&meter).deserialize(serde_yaml_ng::Deserializer::from_str(text));
    result.map_err(|e| meter.error(e))
}

/// Iterator of [`documents`].
pub struct Documents<'a> {
    inner: serde_yaml_ng::Deserializer<'a>,
    meter: Meter,
    done: bool,
}

impl Iterator for Documents<'_> {
    type Item = Result<Value, YamlError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let doc = self.inner.next()?;
        let result = Bounded(&self.meter)
            .deserialize(doc)
            .map_err(|e| self.meter.error(e));
        self.done = result.is_err();
        Some(result)
    }
}

/// Units left, and whether a decode ran out of them.
struct Meter {
    limit: usize,
    bytes: usize,
    left: Cell<usize>,
    exhausted: Cell<bool>,
}

impl Meter {
    fn new(bytes: usize) -> Meter {
        let limit = budget(bytes);
        Meter {
            limit,
            bytes,
            left: Cell::new(limit),
            exhausted: Cell::new(false),
        }
    }

    /// The error of a decode that failed: the budget's when it ran out.
    fn error(&self, e: serde_yaml_ng::Error) -> YamlError {
        if self.exhausted.get() {
            YamlError::Expands {
                limit: self.limit,
                bytes: self.bytes,
            }
        } else {
            YamlError::Syntax(e)
        }
    }

    fn take<E: serde::de::Error>(&self, units: usize) -> Result<(), E> {
        match self.left.get().checked_sub(units) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.exhausted.set(true);
                Err(E::custom("the decoding budget is exhausted"))
            }
        }
    }
}

/// Decodes one value as `serde_json::Value` does, charging the meter for
/// every value and string byte as it is produced (so an alias stops being
/// replayed as soon as the budget is gone).
#[derive(Clone, Copy)]
struct Bounded<'m>(&'m Meter);

/// A map key, charged like a string.
struct Key<'m>(&'m Meter);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        let key = String::deserialize(d)?;
        self.0.take(1 + key.len())?;
        Ok(key)
    }
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.0.take(1)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.0.take(1)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.0.take(1)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Value, E> {
        self.0.take(1)?;
        Number::deserialize(serde::de::value::I128Deserializer::new(v)).map(Value::Number)
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
        self.0.take(1)?;
        Number::deserialize(serde::de::value::U128Deserializer::new(v)).map(Value::Number)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.0.take(1)?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.0.take(1 + v.len())?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.0.take(1 + v.len())?;
        Ok(Value::String(v))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.0.take(1)?;
        Ok(Value::Null)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.0.take(1)?;
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.take(1)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.0.take(1)?;
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(Key(self.0))? {
            let value = map.next_value_seed(self)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `n` aliases to an anchor of `k` scalars: k + n values of text,
    /// k * n once expanded.
    fn flat_laughs(k: usize, n: usize) -> String {
        format!(
            "a: &a [{}]\nb: [{}]\n",
            vec!["x"; k].join(","),
            vec!["*a"; n].join(",")
        )
    }

    #[test]
    fn decodes_like_serde_json_value_within_the_budget() {
        let cases = [
            ("a: 1\nb: [x, 2.5, null, true]\n", true),
            ("{\"a\": {\"b\": [1, -2, 18446744073709551615]}}", true),
            ("x: .inf\ny: '\\L'\nz: \"\\L\\L\"\n", true),
            ("a: &a [1, 2]\nb: *a\n", true),
            ("", true),
            ("a: [", false),
            ("!tag 1", false),
            ("? [a]\n: 1\n", false),
        ];
        for (text, ok) in cases {
            let ours = one_document(text);
            let theirs: Result<Value, _> = serde_yaml_ng::from_str(text);
            assert_eq!(ours.is_ok(), ok, "{text:?}: {ours:?}");
            assert_eq!(ours.ok(), theirs.ok(), "{text:?}");
        }
    }

    #[test]
    fn aliases_past_the_budget_are_an_error_not_a_hang() {
        let text = flat_laughs(10_000, 10_000);
        let started = std::time::Instant::now();
        let err = one_document(&text).expect_err("expands 100 M times");
        assert!(
            matches!(err, YamlError::Expands { limit, bytes } if bytes == text.len() && limit == budget(text.len())),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // A few aliases to a small anchor stay within it.
        let small = flat_laughs(10, 10);
        let v = one_document(&small).expect("100 values");
        assert_eq!(v["b"].as_array().map(Vec::len), Some(10));
        assert!(units(&v) <= budget(small.len()));
    }

    #[test]
    fn the_budget_is_shared_by_the_documents_of_a_text() {
        let doc = format!("{}---\n", flat_laughs(60, 60));
        let text = doc.repeat(20);
        let results: Vec<_> = documents(&text).collect();
        assert!(results.iter().take(1).all(Result::is_ok));
        assert!(
            matches!(results.last(), Some(Err(YamlError::Expands { .. }))),
            "{} results",
            results.len()
        );
        assert_eq!(documents("a: 1\n---\nb: 2\n").count(), 2);
        // an empty document after the last separator is `null`, as the
        // function says and as serde_yaml_ng's own iteration gives it
        assert_eq!(
            documents("a: 1\n---\n").map(Result::ok).collect::<Vec<_>>(),
            vec![Some(json!({"a": 1})), Some(Value::Null)]
        );
    }
}
