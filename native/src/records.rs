//! Kafka message values (predlog record JSON v1) back into a record batch, without the GIL.
//!
//! `predlog sink` reads every record predlog sent to the topic and writes it to the
//! Parquet layout or an Iceberg table. In Python each value became a dict of Python
//! objects, then columns, then Arrow arrays: most of the consumer's time. Here the
//! values are parsed and the Arrow columns built in one pass over the bytes.
//!
//! The Python decoder (`predlog.sinks.kafka._wire.decode`) stays the reference and
//! decides everything unusual: this one takes a batch only when every value is a record
//! it reads exactly as Python would, and otherwise answers None and leaves the whole
//! batch to Python, which decodes it or says what is wrong with it. It declines:
//!
//! - a value that is not a JSON object (or that serde_json would not parse as orjson
//!   does: it refuses lone surrogates and deep nesting, as orjson does or more);
//! - a schema version other than the integer asked for;
//! - a value of another JSON type than its column takes (Python would refuse it, or
//!   convert it: `true` and `1.5` to a number, pyarrow truncating into an integer);
//! - an integer a float column cannot hold exactly, or out of an integer column's range;
//! - a negative zero (`-0` is orjson's integer 0, which the parsed value cannot tell);
//! - a prediction id not in canonical UUID form (Python rewrites those);
//! - a time not in the form predlog writes, `YYYY-MM-DDTHH:MM:SS.ffffff+00:00` (Python's
//!   `datetime.fromisoformat` takes many more), or not a real date and time;
//! - null where the schema allows none.
//!
//! The JSON columns (`features`, `features_summary`, `extra`) arrive as nested JSON and
//! are stored as their text, written as orjson writes it (`crate::format`).

use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float64Array, Int16Array, Int32Array, Int64Array, ListArray, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, SchemaRef, TimeUnit};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::format::{write_scalar, write_string};
use crate::json::{parse, Json};
use crate::table::{NativeBatch, NativeSchema};

/// Integers below this in magnitude a double holds exactly (pyarrow refuses the others).
const EXACT_IN_DOUBLE: u64 = 1 << 53;

/// What one column collects, by its Arrow type and its role.
enum Column {
    Int {
        values: Vec<i64>,
        valid: Vec<bool>,
        min: i64,
        max: i64,
    },
    Float {
        values: Vec<f64>,
        valid: Vec<bool>,
    },
    Text {
        role: Text,
        data: Vec<u8>,
        offsets: Vec<i32>,
        valid: Vec<bool>,
    },
    Stamps {
        values: Vec<i64>,
        valid: Vec<bool>,
    },
    Lists {
        offsets: Vec<i32>,
        valid: Vec<bool>,
        item_data: Vec<u8>,
        item_offsets: Vec<i32>,
        item_valid: Vec<bool>,
    },
}

#[derive(Clone, Copy, PartialEq)]
enum Text {
    Plain,
    Json,
    Uuid,
}

/// None: the value is outside this decoder's path (see the module's list).
type Taken = Option<()>;

impl Column {
    fn new(field: &Field, json: &[String], uuid: &[String], rows: usize) -> Option<Self> {
        let bounds = |min: i64, max: i64| Column::Int {
            values: Vec::with_capacity(rows),
            valid: Vec::with_capacity(rows),
            min,
            max,
        };
        let named = |names: &[String]| names.iter().any(|n| n == field.name());
        Some(match field.data_type() {
            DataType::Int16 => bounds(i16::MIN.into(), i16::MAX.into()),
            DataType::Int32 => bounds(i32::MIN.into(), i32::MAX.into()),
            DataType::Int64 => bounds(i64::MIN, i64::MAX),
            DataType::Float64 => Column::Float {
                values: Vec::with_capacity(rows),
                valid: Vec::with_capacity(rows),
            },
            DataType::Utf8 => Column::Text {
                role: if named(json) {
                    Text::Json
                } else if named(uuid) {
                    Text::Uuid
                } else {
                    Text::Plain
                },
                data: Vec::new(),
                offsets: {
                    let mut o = Vec::with_capacity(rows + 1);
                    o.push(0);
                    o
                },
                valid: Vec::with_capacity(rows),
            },
            DataType::Timestamp(TimeUnit::Microsecond, Some(zone)) if zone.as_ref() == "UTC" => {
                Column::Stamps {
                    values: Vec::with_capacity(rows),
                    valid: Vec::with_capacity(rows),
                }
            }
            DataType::List(item) if item.data_type() == &DataType::Utf8 => Column::Lists {
                offsets: vec![0],
                valid: Vec::with_capacity(rows),
                item_data: Vec::new(),
                item_offsets: vec![0],
                item_valid: Vec::new(),
            },
            _ => return None,
        })
    }

    /// Appends one record's value (None: the record lacks the field).
    fn push(&mut self, value: Option<&Json<'_>>, scratch: &mut String) -> Taken {
        let value = match value {
            None | Some(Json::Null) => None,
            Some(v) => Some(v),
        };
        match self {
            Column::Int {
                values,
                valid,
                min,
                max,
            } => {
                let number = match value {
                    None => None,
                    Some(Json::Int(i)) => Some(*i),
                    Some(Json::UInt(u)) => Some(i64::try_from(*u).ok()?),
                    Some(_) => return None,
                };
                if let Some(n) = number {
                    if n < *min || n > *max {
                        return None;
                    }
                }
                push_optional(values, valid, number);
            }
            Column::Float { values, valid } => {
                let number = match value {
                    None => None,
                    Some(Json::Int(i)) if i.unsigned_abs() < EXACT_IN_DOUBLE => Some(*i as f64),
                    Some(Json::UInt(u)) if *u < EXACT_IN_DOUBLE => Some(*u as f64),
                    Some(Json::Float(f))
                        if f.is_finite() && !(*f == 0.0 && f.is_sign_negative()) =>
                    {
                        Some(*f)
                    }
                    Some(_) => return None,
                };
                push_optional(values, valid, number);
            }
            Column::Text {
                role,
                data,
                offsets,
                valid,
            } => {
                let text: Option<&str> = match (value, *role) {
                    (None, _) => None,
                    (Some(v), Text::Json) => {
                        scratch.clear();
                        write_json(scratch, v)?;
                        Some(scratch)
                    }
                    (Some(Json::Str(s)), Text::Plain) => Some(s),
                    (Some(Json::Str(s)), Text::Uuid) if canonical_uuid(s) => Some(s),
                    _ => return None,
                };
                if let Some(text) = text {
                    data.extend_from_slice(text.as_bytes());
                }
                valid.push(text.is_some());
                offsets.push(i32::try_from(data.len()).ok()?);
            }
            Column::Stamps { values, valid } => {
                let micros = match value {
                    None => None,
                    Some(Json::Str(s)) => Some(rfc3339_micros(s)?),
                    Some(_) => return None,
                };
                push_optional(values, valid, micros);
            }
            Column::Lists {
                offsets,
                valid,
                item_data,
                item_offsets,
                item_valid,
            } => {
                match value {
                    None => valid.push(false),
                    Some(Json::Array(items)) => {
                        for item in items {
                            match item {
                                Json::Null => item_valid.push(false),
                                Json::Str(s) => {
                                    item_data.extend_from_slice(s.as_bytes());
                                    item_valid.push(true);
                                }
                                _ => return None,
                            }
                            item_offsets.push(i32::try_from(item_data.len()).ok()?);
                        }
                        valid.push(true);
                    }
                    Some(_) => return None,
                }
                offsets.push(i32::try_from(item_valid.len()).ok()?);
            }
        }
        Some(())
    }

    /// The Arrow array, or None where the schema refuses a null the column holds.
    fn finish(self, field: &Field) -> Option<ArrayRef> {
        let nulls = |valid: Vec<bool>| -> Option<Option<NullBuffer>> {
            let buffer = NullBuffer::from(valid);
            match buffer.null_count() {
                0 => Some(None),
                _ if !field.is_nullable() => None,
                _ => Some(Some(buffer)),
            }
        };
        Some(match self {
            Column::Int { values, valid, .. } => {
                let nulls = nulls(valid)?;
                // The values were checked against the column's range as they came.
                match field.data_type() {
                    DataType::Int16 => Arc::new(Int16Array::new(
                        values.iter().map(|v| *v as i16).collect(),
                        nulls,
                    )) as ArrayRef,
                    DataType::Int32 => Arc::new(Int32Array::new(
                        values.iter().map(|v| *v as i32).collect(),
                        nulls,
                    )),
                    _ => Arc::new(Int64Array::new(ScalarBuffer::from(values), nulls)),
                }
            }
            Column::Float { values, valid } => {
                Arc::new(Float64Array::new(ScalarBuffer::from(values), nulls(valid)?))
            }
            Column::Text {
                data,
                offsets,
                valid,
                ..
            } => Arc::new(
                StringArray::try_new(
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    Buffer::from_vec(data),
                    nulls(valid)?,
                )
                .ok()?,
            ),
            Column::Stamps { values, valid } => Arc::new(
                TimestampMicrosecondArray::new(ScalarBuffer::from(values), nulls(valid)?)
                    .with_timezone("UTC"),
            ),
            Column::Lists {
                offsets,
                valid,
                item_data,
                item_offsets,
                item_valid,
            } => {
                let DataType::List(item_field) = field.data_type() else {
                    return None;
                };
                let items = NullBuffer::from(item_valid);
                let items = StringArray::try_new(
                    OffsetBuffer::new(ScalarBuffer::from(item_offsets)),
                    Buffer::from_vec(item_data),
                    (items.null_count() > 0).then_some(items),
                )
                .ok()?;
                Arc::new(
                    ListArray::try_new(
                        item_field.clone(),
                        OffsetBuffer::new(ScalarBuffer::from(offsets)),
                        Arc::new(items),
                        nulls(valid)?,
                    )
                    .ok()?,
                )
            }
        })
    }
}

/// A value and whether it is there, each in its own vector (a null's value is unused).
fn push_optional<T: Default>(values: &mut Vec<T>, valid: &mut Vec<bool>, value: Option<T>) {
    valid.push(value.is_some());
    values.push(value.unwrap_or_default());
}

/// Any JSON value as orjson writes it; None for a negative zero, whose source text
/// (`-0`, orjson's integer 0, or `-0.0`) the parsed value cannot tell.
fn write_json(out: &mut String, value: &Json<'_>) -> Taken {
    match value {
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item)?;
            }
            out.push(']');
        }
        Json::Object(pairs) => {
            out.push('{');
            for (i, (key, item)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_json(out, item)?;
            }
            out.push('}');
        }
        scalar => return write_scalar(out, scalar).then_some(()),
    }
    Some(())
}

/// Lower-case hex in 8-4-4-4-12 groups: the form Python's `str(uuid.UUID(...))` gives.
fn canonical_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(b),
        })
}

/// Microseconds since the epoch of `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`, the form
/// predlog writes; None for any other text, or a date or time that does not exist.
fn rfc3339_micros(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 32 || &b[26..] != b"+00:00" {
        return None;
    }
    let separators = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ];
    if separators.iter().any(|(at, c)| b[*at] != *c) {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<i64> {
        b[from..to].iter().try_fold(0i64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    let fraction = number(20, 26)?;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if year < 1 || day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000_000 + second * 1_000_000 + fraction)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The batch of `values`, or None where any is outside this decoder's path.
fn decode(
    schema: &SchemaRef,
    values: &[&[u8]],
    json: &[String],
    uuid: &[String],
    version: (&str, i64),
) -> Option<RecordBatch> {
    let fields = schema.fields();
    let mut columns = fields
        .iter()
        .map(|f| Column::new(f, json, uuid, values.len()))
        .collect::<Option<Vec<_>>>()?;
    let version_at = fields.iter().position(|f| f.name() == version.0)?;
    // Each key's column, guessed from the record before: a producer writes every
    // record of a batch with its keys in one order.
    let mut guess: Vec<usize> = Vec::new();
    let mut slots: Vec<Option<usize>> = vec![None; fields.len()];
    let mut scratch = String::new();
    for value in values {
        let record = parse(value)?;
        let Json::Object(pairs) = &record else {
            return None;
        };
        slots.iter_mut().for_each(|s| *s = None);
        for (k, (key, _)) in pairs.iter().enumerate() {
            let at = match guess.get(k) {
                Some(&g) if g < fields.len() && fields[g].name() == key.as_ref() => Some(g),
                _ => {
                    let found = fields.iter().position(|f| f.name() == key.as_ref());
                    if k >= guess.len() {
                        guess.resize(k + 1, usize::MAX);
                    }
                    guess[k] = found.unwrap_or(usize::MAX);
                    found
                }
            };
            // A key outside the schema is left out, as the Python decoder leaves it.
            if let Some(at) = at {
                slots[at] = Some(k);
            }
        }
        let item = |slot: Option<usize>| slot.map(|k| &pairs[k].1);
        match item(slots[version_at]) {
            Some(Json::Int(v)) if *v == version.1 => {}
            Some(Json::UInt(v)) if i64::try_from(*v).ok() == Some(version.1) => {}
            _ => return None,
        }
        for (column, slot) in columns.iter_mut().zip(slots.iter()) {
            column.push(item(*slot), &mut scratch)?;
        }
    }
    let arrays = columns
        .into_iter()
        .zip(fields.iter())
        .map(|(column, field)| column.finish(field))
        .collect::<Option<Vec<_>>>()?;
    RecordBatch::try_new(schema.clone(), arrays).ok()
}

/// Kafka message values in predlog record JSON v1 as one batch of `schema`, or None
/// where the Python decoder must decide (see the module's list). `json_columns` are
/// stored as JSON text, `uuid_columns` must hold canonical UUIDs, and every record's
/// `version[0]` must be the integer `version[1]`. Parses without the GIL.
#[pyfunction]
pub fn decode_records(
    py: Python<'_>,
    schema: &NativeSchema,
    values: &Bound<'_, PyList>,
    json_columns: Vec<String>,
    uuid_columns: Vec<String>,
    version: (String, i64),
) -> PyResult<Option<NativeBatch>> {
    // Held here, so each value outlives the parse even if the list changes meanwhile.
    let held: Vec<Bound<'_, PyBytes>> = values
        .iter()
        .map(|v| v.downcast_into::<PyBytes>().map_err(PyErr::from))
        .collect::<PyResult<_>>()?;
    let spans: Vec<(usize, usize)> = held
        .iter()
        .map(|b| {
            let bytes = b.as_bytes();
            (bytes.as_ptr() as usize, bytes.len())
        })
        .collect();
    let schema = schema.schema_ref();
    let decoded = crate::table::unpanicked(|| {
        Ok(py.allow_threads(|| {
            // SAFETY: every span points into a bytes object that `held` keeps alive
            // for the whole call, and bytes objects are immutable.
            let slices: Vec<&[u8]> = spans
                .iter()
                .map(|(at, len)| unsafe { std::slice::from_raw_parts(*at as *const u8, *len) })
                .collect();
            decode(
                &schema,
                &slices,
                &json_columns,
                &uuid_columns,
                (&version.0, version.1),
            )
        }))
    })?;
    drop(held);
    Ok(decoded.map(NativeBatch::from_batch))
}
