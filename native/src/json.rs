//! A JSON value that borrows from the body it was parsed from, read as orjson reads it.
//!
//! serde_json does the parsing (strict RFC 8259, correctly rounded floats, a nesting
//! limit); this type only decides what is kept. Strings without escapes point into the
//! body instead of being copied, and objects are vectors of pairs in arrival order: a
//! repeated key keeps its first place and takes the last value, as a Python dict built
//! by orjson does. No hashing for the small objects that model inputs are.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Objects up to this many keys find a repeated key by scanning; larger ones index them.
const SCAN_KEYS: usize = 32;

pub enum Json<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    pub fn is_container(&self) -> bool {
        matches!(self, Json::Array(_) | Json::Object(_))
    }

    /// The value of `key` in an object (None for other kinds, or a missing key).
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(pairs) => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Pairs with each key once: a later value replaces an earlier one in its place.
pub struct Pairs<'k, 'v> {
    pub items: Vec<(Cow<'k, str>, &'v Json<'v>)>,
    index: Option<HashMap<Cow<'k, str>, usize>>,
}

impl<'k, 'v> Pairs<'k, 'v> {
    pub fn new() -> Self {
        Pairs {
            items: Vec::new(),
            index: None,
        }
    }

    pub fn insert(&mut self, key: Cow<'k, str>, value: &'v Json<'v>) {
        insert(&mut self.items, &mut self.index, key, value);
    }
}

/// Adds a pair, or replaces the value of the pair with that key in its place: a scan of
/// a small object, an index of a large one (built once it grows past [`SCAN_KEYS`]).
fn insert<'k, V>(
    pairs: &mut Vec<(Cow<'k, str>, V)>,
    index: &mut Option<HashMap<Cow<'k, str>, usize>>,
    key: Cow<'k, str>,
    value: V,
) {
    let found = match index {
        Some(index) => index.get(&key).copied(),
        None => pairs.iter().position(|(k, _)| *k == key),
    };
    match found {
        Some(at) => pairs[at].1 = value,
        None => {
            if let Some(index) = index {
                index.insert(key.clone(), pairs.len());
            }
            pairs.push((key, value));
            if index.is_none() && pairs.len() > SCAN_KEYS {
                *index = Some(
                    pairs
                        .iter()
                        .enumerate()
                        .map(|(i, (k, _))| (k.clone(), i))
                        .collect(),
                );
            }
        }
    }
}

/// A key, borrowed from the body when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct JsonVisitor;
        impl<'de> Visitor<'de> for JsonVisitor {
            type Value = Json<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Json::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Json::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Json::UInt(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Json::Float(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Json::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Json::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Json::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                // Most model inputs fit: one allocation instead of four regrowths.
                let mut pairs = Vec::with_capacity(16);
                let mut index = None;
                while let Some(Key(key)) = map.next_key()? {
                    let value = map.next_value()?;
                    insert(&mut pairs, &mut index, key, value);
                }
                Ok(Json::Object(pairs))
            }
        }
        deserializer.deserialize_any(JsonVisitor)
    }
}

/// Strict JSON, as orjson reads it; None for anything it would not take as is.
pub fn parse(body: &[u8]) -> Option<Json<'_>> {
    serde_json::from_slice(body).ok()
}
