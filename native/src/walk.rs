//! The bodies' meaning, as `predlog.flush._exchange` reads it: strict JSON, BentoML's
//! wrapping undone, nested objects flattened, the score and decision found. Runs
//! without the GIL, on owned bytes.

use serde_json::{Map, Value};

use crate::format::write_flat;

/// Lists longer than this, or holding containers, are left out of the features.
const MAX_LIST: usize = 256;
/// Longest list index a dotted path may name.
const MAX_INDEX_DIGITS: usize = 18;
/// Response keys that hold the score, in order of preference.
const SCORE_KEYS: [&str; 3] = ["score", "probability", "prediction"];

/// A middleware's decoding options (`features_field`, `score_field`, `decision_field`).
#[derive(Clone, Default)]
pub struct Options {
    pub features_field: Option<String>,
    pub score_field: Option<String>,
    pub decision_field: Option<String>,
}

pub enum RequestOutcome {
    /// Only a lenient parser could read it, or it must be decoded in Python.
    Declined,
    /// No features, and the flag saying why (empty when there is nothing to say).
    Flagged(&'static str),
    /// The flattened features as JSON text, and how many are null.
    Features(String, usize),
}

pub enum ResponseOutcome {
    Declined,
    /// What was found: the score and decision, each when present.
    Values(Option<Value>, Option<Value>),
}

/// Strict JSON, as orjson reads it; None for anything it would not take as is.
fn parse(body: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(body).ok()
}

/// `_unwrap`: BentoML wraps the argument under its parameter name, `{"tx": {...}}`.
fn unwrap(mut value: &Value) -> &Value {
    while let Value::Object(map) = value {
        if map.len() != 1 {
            break;
        }
        match map.values().next() {
            Some(inner @ Value::Object(_)) => value = inner,
            _ => break,
        }
    }
    value
}

fn is_index(step: &str) -> bool {
    !step.is_empty() && step.len() <= MAX_INDEX_DIGITS && step.bytes().all(|b| b.is_ascii_digit())
}

/// `field_path`: `a.b.0` into objects and arrays; None when a step is missing (or null).
fn field_path<'a>(mut value: &'a Value, path: &str) -> Option<&'a Value> {
    for step in path.split('.') {
        value = match value {
            Value::Object(map) => map.get(step)?,
            Value::Array(items) if is_index(step) => {
                let index: usize = step.parse().ok()?;
                items.get(index)?
            }
            _ => return None,
        };
    }
    match value {
        Value::Null => None,
        other => Some(other),
    }
}

fn is_container(value: &Value) -> bool {
    matches!(value, Value::Object(_) | Value::Array(_))
}

/// `flatten`: scalar leaves, nested keys joined with dots, short scalar lists as `key.0`...
fn flatten(map: &Map<String, Value>, prefix: &str, out: &mut Map<String, Value>) {
    for (key, item) in map {
        let name = format!("{prefix}{key}");
        match item {
            Value::Object(inner) => flatten(inner, &format!("{name}."), out),
            Value::Array(items) => {
                if items.len() <= MAX_LIST && !items.iter().any(is_container) {
                    for (i, x) in items.iter().enumerate() {
                        out.insert(format!("{name}.{i}"), x.clone());
                    }
                }
            }
            scalar => {
                out.insert(name, scalar.clone());
            }
        }
    }
}

pub fn decode_request(body: &[u8], options: &Options) -> RequestOutcome {
    let Some(parsed) = parse(body) else {
        return RequestOutcome::Declined;
    };
    let target = match &options.features_field {
        Some(path) => match field_path(&parsed, path) {
            Some(v) => v,
            None => return RequestOutcome::Flagged("request_body_not_object"),
        },
        None => unwrap(&parsed),
    };
    let Value::Object(map) = target else {
        return RequestOutcome::Flagged("request_body_not_object");
    };
    let written = if map.values().any(is_container) {
        let mut flat = Map::new();
        flatten(map, "", &mut flat);
        write_flat(&flat)
    } else {
        write_flat(map)
    };
    match written {
        Some((text, nulls)) => RequestOutcome::Features(text, nulls),
        None => RequestOutcome::Declined,
    }
}

pub fn decode_response(body: &[u8], options: &Options) -> ResponseOutcome {
    let Some(parsed) = parse(body) else {
        return ResponseOutcome::Declined;
    };
    if let Value::Number(_) = parsed {
        return ResponseOutcome::Values(Some(parsed), None);
    }
    // Some(None): the option is set and its path holds nothing (the record's None).
    let mut score: Option<Option<&Value>> =
        options.score_field.as_deref().map(|p| field_path(&parsed, p));
    let mut decision: Option<Option<&Value>> =
        options.decision_field.as_deref().map(|p| field_path(&parsed, p));
    if let Value::Object(map) = unwrap(&parsed) {
        if score.is_none() {
            if let Some(key) = SCORE_KEYS.iter().find(|k| map.contains_key(**k)) {
                score = Some(map.get(*key).filter(|v| !v.is_null()));
            }
        }
        if decision.is_none() {
            if let Some(value) = map.get("decision") {
                decision = Some(Some(value).filter(|v| !v.is_null()));
            }
        }
    }
    ResponseOutcome::Values(score.flatten().cloned(), decision.flatten().cloned())
}
