//! Size bounds on what the webhook accepts to work on: any object in scope,
//! and the Server and ServerConfig it is built from. A Seldon pod spec holds
//! a few containers with a few dozen env entries each; an object far beyond
//! that is refused with a message naming the list, before it is parsed into
//! a tree (a JSON tree takes 10-50 times its text) and before any patch is
//! built for it (the API server applies a patch in time that grows with the
//! product of its operations and its lists). Limits: `docs/security.md`.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Most entries any one list may hold.
pub const MAX_LIST_ENTRIES: usize = 1_000;
/// Most JSON values (every object, list, string, number...) one object may hold.
pub const MAX_VALUES: usize = 50_000;

/// Why an object is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    /// One list is longer than [`MAX_LIST_ENTRIES`]; `path` is empty for
    /// the value itself.
    #[error("{} has more than {limit} entries", path_or_root(.path))]
    LongList { path: String, limit: usize },
    /// The whole object holds more than [`MAX_VALUES`] values.
    #[error("it holds more than {limit} JSON values")]
    TooManyValues { limit: usize },
    /// The text is not JSON (or nests deeper than serde_json allows).
    #[error("it is not valid JSON: {0}")]
    Json(String),
}

impl BoundsError {
    /// The same error for a value found at `prefix` (`spec`, say).
    pub fn under(self, prefix: &str) -> Self {
        match self {
            BoundsError::LongList { path, limit } => BoundsError::LongList {
                path: if path.is_empty() {
                    prefix.to_string()
                } else {
                    format!("{prefix}.{path}")
                },
                limit,
            },
            other => other,
        }
    }
}

fn path_or_root(path: &str) -> &str {
    if path.is_empty() {
        "the object"
    } else {
        path
    }
}

/// The limits to check against (the constants above, smaller in tests).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub list_entries: usize,
    pub values: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            list_entries: MAX_LIST_ENTRIES,
            values: MAX_VALUES,
        }
    }
}

/// Checks JSON text without building a tree: one pass, no allocation but
/// the path of the list being read.
pub fn check_json(text: &str, limits: Limits) -> Result<(), BoundsError> {
    let mut scan = Scan {
        limits,
        values: 0,
        path: Vec::new(),
        error: None,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let result = (&mut scan).deserialize(&mut de).and_then(|()| de.end());
    match (scan.error, result) {
        (Some(e), _) => Err(e),
        (None, Err(e)) => Err(BoundsError::Json(e.to_string())),
        (None, Ok(())) => Ok(()),
    }
}

/// Checks a parsed value (a Server's or a ServerConfig's pod spec).
pub fn check_value(value: &Value, limits: Limits) -> Result<(), BoundsError> {
    fn walk<'a>(
        v: &'a Value,
        limits: Limits,
        values: &mut usize,
        path: &mut Vec<Segment<'a>>,
    ) -> Result<(), BoundsError> {
        *values += 1;
        if *values > limits.values {
            return Err(BoundsError::TooManyValues {
                limit: limits.values,
            });
        }
        match v {
            Value::Array(a) => {
                if a.len() > limits.list_entries {
                    return Err(long_list(path, limits));
                }
                for (i, e) in a.iter().enumerate() {
                    path.push(Segment::Index(i));
                    walk(e, limits, values, path)?;
                    path.pop();
                }
            }
            Value::Object(m) => {
                for (k, e) in m {
                    path.push(Segment::Key(std::borrow::Cow::Borrowed(k)));
                    walk(e, limits, values, path)?;
                    path.pop();
                }
            }
            _ => {}
        }
        Ok(())
    }
    walk(value, limits, &mut 0, &mut Vec::new())
}

/// One step of the path to a list, for the message (keys borrowed from the
/// text where they have no escapes, so the scan allocates nothing).
#[derive(Clone, Debug)]
enum Segment<'a> {
    Key(std::borrow::Cow<'a, str>),
    Index(usize),
}

fn long_list(path: &[Segment<'_>], limits: Limits) -> BoundsError {
    BoundsError::LongList {
        path: render_path(path),
        limit: limits.list_entries,
    }
}

/// `spec.template.spec.containers[1].args`; empty for the root.
fn render_path(path: &[Segment<'_>]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The streaming scan: a serde visitor that counts instead of building.
struct Scan<'a> {
    limits: Limits,
    values: usize,
    path: Vec<Segment<'a>>,
    /// The limit that stopped the scan (serde errors carry only text).
    error: Option<BoundsError>,
}

impl Scan<'_> {
    fn count<E: serde::de::Error>(&mut self) -> Result<(), E> {
        self.values += 1;
        if self.values > self.limits.values {
            return Err(self.stop(BoundsError::TooManyValues {
                limit: self.limits.values,
            }));
        }
        Ok(())
    }

    fn stop<E: serde::de::Error>(&mut self, e: BoundsError) -> E {
        let text = e.to_string();
        self.error = Some(e);
        E::custom(text)
    }
}

impl<'de> DeserializeSeed<'de> for &mut Scan<'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Scan<'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.count()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.count()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.count()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.count()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.count()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.count()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.count()?;
        let mut i = 0usize;
        loop {
            if i == self.limits.list_entries {
                // one more entry is one too many
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    let e = long_list(&self.path, self.limits);
                    return Err(self.stop(e));
                }
                return Ok(());
            }
            self.path.push(Segment::Index(i));
            let more = seq.next_element_seed(&mut *self)?;
            self.path.pop();
            if more.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.count()?;
        while let Some(key) = map.next_key::<BorrowedKey<'de>>()? {
            self.path.push(Segment::Key(key.0));
            map.next_value_seed(&mut *self)?;
            self.path.pop();
        }
        Ok(())
    }
}

/// A map key, borrowed from the text when it has no escapes (serde's
/// `Cow<str>` always copies).
struct BorrowedKey<'a>(std::borrow::Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for BorrowedKey<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BorrowedKey<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(BorrowedKey(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedKey(std::borrow::Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SMALL: Limits = Limits {
        list_entries: 3,
        values: 20,
    };

    #[test]
    fn bounds_table() {
        let cases: &[(&str, Value, Result<(), BoundsError>)] = &[
            ("within", json!({"a": [1, 2, 3], "b": {"c": "d"}}), Ok(())),
            (
                "long list named by its path",
                json!({"spec": {"containers": [{"args": ["", "", "", ""]}]}}),
                Err(BoundsError::LongList {
                    path: "spec.containers[0].args".into(),
                    limit: 3,
                }),
            ),
            (
                "a long list at the root",
                json!([1, 2, 3, 4]),
                Err(BoundsError::LongList {
                    path: String::new(),
                    limit: 3,
                }),
            ),
            (
                "too many values",
                json!({"a": [[1, 2, 3], [1, 2, 3], [1, 2, 3]], "b": [[1, 2, 3], [1, 2, 3]]}),
                Err(BoundsError::TooManyValues { limit: 20 }),
            ),
        ];
        for (name, value, want) in cases {
            assert_eq!(&check_value(value, SMALL), want, "check_value: {name}");
            assert_eq!(
                &check_json(&value.to_string(), SMALL),
                want,
                "check_json: {name}"
            );
        }
    }

    #[test]
    fn messages_name_the_list() {
        let e = check_value(&json!({"a": [1, 2, 3, 4]}), SMALL).unwrap_err();
        assert_eq!(e.clone().to_string(), "a has more than 3 entries");
        assert_eq!(
            e.under("spec").to_string(),
            "spec.a has more than 3 entries"
        );
        let root = check_value(&json!([1, 2, 3, 4]), SMALL).unwrap_err();
        assert_eq!(
            root.clone().to_string(),
            "the object has more than 3 entries"
        );
        assert_eq!(
            root.under("args").to_string(),
            "args has more than 3 entries"
        );
    }

    #[test]
    fn text_that_is_not_json_is_named() {
        assert!(matches!(
            check_json("{\"a\": [1,", SMALL),
            Err(BoundsError::Json(_))
        ));
        assert!(matches!(
            check_json("{} trailing", SMALL),
            Err(BoundsError::Json(_))
        ));
    }

    #[test]
    fn the_real_limits_admit_a_real_workload() {
        let text = include_str!("../../tests/fixtures/serverconfigs.yaml");
        let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(text)
            .map(|d| serde::Deserialize::deserialize(d).expect("fixture is YAML"))
            .collect();
        for d in docs {
            assert_eq!(check_value(&d, Limits::default()), Ok(()));
            assert_eq!(check_json(&d.to_string(), Limits::default()), Ok(()));
        }
    }
}
