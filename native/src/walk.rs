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
/// Response keys that hold the score, in order of precedence (`SCORE_KEYS`).
const SCORE_KEYS: [&str; 4] = ["score", "probability", "proba", "probabilities"];
/// Response keys that hold the decision, in order of precedence (`DECISION_KEYS`).
const DECISION_KEYS: [&str; 4] = ["decision", "label", "class", "outcome"];
/// The score when a number, the decision when text or a bool (`EITHER_KEY`).
const EITHER_KEY: &str = "prediction";
/// One probability per class (`CLASSES_KEY`).
const CLASSES_KEY: &str = "probabilities";
/// The path of a value that is the whole body (`BODY_PATH`).
const BODY_PATH: &str = "$";

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

/// A dotted path in a response: the key itself, unallocated, in the usual flat response.
pub type Path = Cow<'static, str>;

/// A score or decision found in a response, and the path it was read from (none for null).
pub struct Found {
    pub value: Scalar,
    pub path: Option<Path>,
}

pub enum ResponseOutcome {
    Declined,
    /// What was found: the score and decision, each when present.
    Values(Option<Found>, Option<Found>),
}

/// `_found`: a value as the score or decision; a bool decision as JSON spells it.
fn found(value: Option<&Json<'_>>, path: Path, decision: bool) -> Found {
    let value = match value {
        Some(Json::Bool(b)) if decision => Scalar::Str(if *b { "true" } else { "false" }.into()),
        other => Scalar::of(other),
    };
    let path = match value {
        Scalar::Null => None,
        _ => Some(path),
    };
    Found { value, path }
}

fn is_number(value: &Json<'_>) -> bool {
    matches!(value, Json::Int(_) | Json::UInt(_) | Json::Float(_))
}

/// `_unwrap_response`: lists of one item, and objects with one key holding an object
/// (unless the key is `probabilities`), unwrapped; with the path prefix taken.
fn unwrap_response<'v, 'a>(mut value: &'v Json<'a>, prefix: &mut String) -> &'v Json<'a> {
    loop {
        match value {
            Json::Array(items) if items.len() == 1 => {
                value = &items[0];
                prefix.push_str("0.");
            }
            Json::Object(pairs)
                if pairs.len() == 1
                    && pairs[0].0 != CLASSES_KEY
                    && matches!(pairs[0].1, Json::Object(_)) =>
            {
                prefix.push_str(&pairs[0].0);
                prefix.push('.');
                value = &pairs[0].1;
            }
            _ => return value,
        }
    }
}

/// `_single`: a list of one value is that value.
fn single<'v, 'a>(mut value: &'v Json<'a>, path: &mut Path) -> &'v Json<'a> {
    while let Json::Array(items) = value {
        if items.len() != 1 {
            break;
        }
        value = &items[0];
        path.to_mut().push_str(".0");
    }
    value
}

/// `_of_classes`: the only class's probability, or the second of two.
fn of_classes<'v, 'a>(value: &'v Json<'a>, path: &mut Path) -> &'v Json<'a> {
    match value {
        Json::Object(pairs) if (1..=2).contains(&pairs.len()) => {
            let (key, inner) = &pairs[pairs.len() - 1];
            let path = path.to_mut();
            path.push('.');
            path.push_str(key);
            inner
        }
        Json::Array(items) if items.len() == 2 => {
            path.to_mut().push_str(".1");
            &items[1]
        }
        other => other,
    }
}

/// The first of `keys` present in an object: the key, its value and the value's path.
fn first_of<'v, 'a>(
    object: &'v Json<'a>,
    keys: &[&'static str],
    prefix: &str,
) -> Option<(&'static str, &'v Json<'a>, Path)> {
    let (key, value) = keys.iter().find_map(|key| Some((*key, object.get(key)?)))?;
    let mut path = joined(prefix, key);
    let value = single(value, &mut path);
    Some((key, value, path))
}

/// `prefix + key`: the key itself when there is no prefix.
fn joined(prefix: &str, key: &'static str) -> Path {
    if prefix.is_empty() {
        return Cow::Borrowed(key);
    }
    let mut path = String::with_capacity(prefix.len() + key.len() + 4);
    path.push_str(prefix);
    path.push_str(key);
    Cow::Owned(path)
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
    if is_number(&parsed) {
        return ResponseOutcome::Values(
            Some(found(Some(&parsed), Cow::Borrowed(BODY_PATH), false)),
            None,
        );
    }
    // Some once decided: a configured path (even one holding nothing), or a name found.
    let mut score = options
        .score_field
        .as_deref()
        .map(|p| found(field_path(&parsed, p), Cow::Owned(p.to_owned()), false));
    let mut decision = options
        .decision_field
        .as_deref()
        .map(|p| found(field_path(&parsed, p), Cow::Owned(p.to_owned()), true));
    if score.is_some() && decision.is_some() {
        return ResponseOutcome::Values(score, decision);
    }
    let mut prefix = String::new();
    let value = unwrap_response(&parsed, &mut prefix);
    let (either, path) = if let Json::Object(_) = value {
        if score.is_none() {
            if let Some((key, v, mut path)) = first_of(value, &SCORE_KEYS, &prefix) {
                let v = if key == CLASSES_KEY {
                    of_classes(v, &mut path)
                } else {
                    v
                };
                score = Some(found(Some(v), path, false));
            }
        }
        if decision.is_none() {
            if let Some((_, v, path)) = first_of(value, &DECISION_KEYS, &prefix) {
                decision = Some(found(Some(v), path, true));
            }
        }
        let Some(v) = value.get(EITHER_KEY) else {
            return ResponseOutcome::Values(score, decision);
        };
        let mut path = joined(&prefix, EITHER_KEY);
        (single(v, &mut path), path)
    } else {
        let path = match prefix.strip_suffix('.') {
            Some(p) if !p.is_empty() => Cow::Owned(p.to_owned()),
            _ => Cow::Borrowed(BODY_PATH),
        };
        (value, path)
    };
    // `prediction`, or a response that is one bare value: its type says which it is.
    if is_number(either) {
        if score.is_none() {
            score = Some(found(Some(either), path, false));
        }
    } else if matches!(either, Json::Str(_) | Json::Bool(_)) && decision.is_none() {
        decision = Some(found(Some(either), path, true));
    }
    ResponseOutcome::Values(score, decision)
}
