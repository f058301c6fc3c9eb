//! The bodies' meaning, as `predlog.flush._exchange` reads it: strict JSON, BentoML's
//! wrapping undone, nested objects flattened, the score and decision found. Runs
//! without the GIL, on owned bytes.

use std::borrow::Cow;

use crate::format::write_flat;
use crate::json::{parse, Json, Pairs};

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
    /// No features, and the flag saying why.
    Flagged(&'static str),
    /// The flattened features as JSON text, and how many are null.
    Features(String, usize),
}

/// A score or decision, owned, to cross back to the GIL.
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    /// An array or object: its text in a record would be Python's repr (declined).
    Container,
}

impl Scalar {
    fn of(value: Option<&Json<'_>>) -> Scalar {
        match value {
            None | Some(Json::Null) => Scalar::Null,
            Some(Json::Bool(b)) => Scalar::Bool(*b),
            Some(Json::Int(i)) => Scalar::Int(*i),
            Some(Json::UInt(u)) => Scalar::UInt(*u),
            Some(Json::Float(f)) => Scalar::Float(*f),
            Some(Json::Str(s)) => Scalar::Str(s.to_string()),
            Some(Json::Array(_) | Json::Object(_)) => Scalar::Container,
        }
    }
}

pub enum ResponseOutcome {
    Declined,
    /// What was found: the score and decision, each when present.
    Values(Option<Scalar>, Option<Scalar>),
}

/// `_unwrap`: BentoML wraps the argument under its parameter name, `{"tx": {...}}`.
fn unwrap<'v, 'a>(mut value: &'v Json<'a>) -> &'v Json<'a> {
    while let Json::Object(pairs) = value {
        if pairs.len() != 1 {
            break;
        }
        match &pairs[0].1 {
            inner @ Json::Object(_) => value = inner,
            _ => break,
        }
    }
    value
}

fn is_index(step: &str) -> bool {
    !step.is_empty() && step.len() <= MAX_INDEX_DIGITS && step.bytes().all(|b| b.is_ascii_digit())
}

/// `field_path`: `a.b.0` into objects and arrays; None when a step is missing (or null).
fn field_path<'v, 'a>(mut value: &'v Json<'a>, path: &str) -> Option<&'v Json<'a>> {
    for step in path.split('.') {
        value = match value {
            Json::Object(_) => value.get(step)?,
            Json::Array(items) if is_index(step) => items.get(step.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    match value {
        Json::Null => None,
        other => Some(other),
    }
}

/// `flatten`: scalar leaves, nested keys joined with dots, short scalar lists as `key.0`...
fn flatten<'v>(pairs: &'v [(Cow<'v, str>, Json<'v>)], prefix: &str, out: &mut Pairs<'v, 'v>) {
    for (key, item) in pairs {
        let name = || -> Cow<'v, str> {
            if prefix.is_empty() {
                key.clone()
            } else {
                Cow::Owned(format!("{prefix}{key}"))
            }
        };
        match item {
            Json::Object(inner) => flatten(inner, &format!("{prefix}{key}."), out),
            Json::Array(items) => {
                if items.len() <= MAX_LIST && !items.iter().any(Json::is_container) {
                    let name = name();
                    for (i, x) in items.iter().enumerate() {
                        out.insert(Cow::Owned(format!("{name}.{i}")), x);
                    }
                }
            }
            scalar => out.insert(name(), scalar),
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
    let Json::Object(pairs) = target else {
        return RequestOutcome::Flagged("request_body_not_object");
    };
    let written = if pairs.iter().any(|(_, v)| v.is_container()) {
        let mut flat = Pairs::new();
        flatten(pairs, "", &mut flat);
        write_flat(flat.items.iter().map(|(k, v)| (k.as_ref(), *v)))
    } else {
        write_flat(pairs.iter().map(|(k, v)| (k.as_ref(), v)))
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
    if let Json::Int(_) | Json::UInt(_) | Json::Float(_) = parsed {
        return ResponseOutcome::Values(Some(Scalar::of(Some(&parsed))), None);
    }
    // Some(None): the option is set and its path holds nothing (the record's None).
    let mut score: Option<Option<&Json<'_>>> = options
        .score_field
        .as_deref()
        .map(|p| field_path(&parsed, p));
    let mut decision: Option<Option<&Json<'_>>> = options
        .decision_field
        .as_deref()
        .map(|p| field_path(&parsed, p));
    let unwrapped = unwrap(&parsed);
    if let Json::Object(_) = unwrapped {
        if score.is_none() {
            if let Some(key) = SCORE_KEYS.iter().find(|k| unwrapped.get(k).is_some()) {
                score = Some(unwrapped.get(key));
            }
        }
        if decision.is_none() {
            if let Some(value) = unwrapped.get("decision") {
                decision = Some(Some(value));
            }
        }
    }
    ResponseOutcome::Values(score.map(Scalar::of), decision.map(Scalar::of))
}
