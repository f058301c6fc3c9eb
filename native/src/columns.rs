//! A batch of middleware captures resolved into columns, not into one tuple per record.
//!
//! `resolve` hands the batch builder a Python tuple per record, whose strings the builder
//! then reads back into Arrow columns: for the middleware's usual batch, most of the
//! flusher's time went into making and reading those objects. `resolve_columns` decodes
//! the same exchanges (`crate::each_decoded`, `crate::merge`) and writes each value
//! straight into its column's buffers, in the forms `predlog._table` builds Arrow arrays
//! from. What is left to Python is what works on whole columns: flags from the numbers,
//! sampling, prediction ids, confidence bands.
//!
//! It is all or nothing: the batch is taken only when every capture is an exchange
//! `resolve` would take and every value is one whose column form is certain (str or None
//! in a text column; a float, an int a double holds exactly, or None in a number column;
//! a recorded field for the extra map that `Merged::extra_text` writes). Otherwise it
//! answers None and the batch goes through `resolve` and the Python builder, the
//! reference the differential tests hold this to.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::table::unpanicked;
use crate::{each_decoded, layout_of, merge, Positions};

/// What one capture position becomes; named by the caller, which owns the layout.
enum Column {
    /// An exact int: the capture's nanoseconds.
    Stamp(Vec<i64>),
    /// str or None.
    Text(Text),
    /// An id the middleware keeps as an int, written as hex text of this width.
    Hex(usize, Text),
    /// float, an int a double holds exactly, or None (NaN, and marked absent).
    Float(Vec<f64>, Vec<u8>),
    /// The features as text, with each record's count of null features.
    Features(Text, Vec<i32>),
    /// The extra map as text.
    Extra(Text),
    /// Each record's flags, for the records that have some.
    Flags(Vec<(usize, Vec<String>)>),
    /// Must be None in every record (what only Python reads, such as feature timestamps).
    Absent,
}

/// The most a text column reserves ahead of its values.
const RESERVE_BOUND: usize = 16 << 20;

/// A string column's Arrow buffers: the texts end to end, int32 offsets, validity.
#[derive(Default)]
struct Text {
    data: Vec<u8>,
    offsets: Vec<i32>,
    valid: Vec<u8>,
    nulls: bool,
}

impl Text {
    fn new(capacity: usize) -> Self {
        let mut offsets = Vec::with_capacity(capacity + 1);
        offsets.push(0);
        Text {
            offsets,
            valid: Vec::with_capacity(capacity),
            ..Text::default()
        }
    }

    /// Push one value; false past the 2 GiB an int32 offset can reach.
    fn push(&mut self, text: Option<&[u8]>) -> bool {
        match text {
            Some(bytes) => {
                if self.data.is_empty() {
                    // Room for the batch at the first value's size, not regrown in steps;
                    // bounded, since one large first body says nothing of the others.
                    let guess = bytes.len().saturating_mul(self.valid.capacity());
                    self.data.reserve(guess.min(RESERVE_BOUND));
                }
                self.data.extend_from_slice(bytes);
                self.valid.push(1);
            }
            None => {
                self.valid.push(0);
                self.nulls = true;
            }
        }
        match i32::try_from(self.data.len()) {
            Ok(end) => {
                self.offsets.push(end);
                true
            }
            Err(_) => false,
        }
    }

    /// (offsets, data, validity or None when every value is there).
    fn into_python(self, py: Python<'_>) -> Bound<'_, PyTuple> {
        let valid = if self.nulls {
            PyBytes::new(py, &self.valid).into_any()
        } else {
            py.None().into_bound(py)
        };
        PyTuple::new(
            py,
            [
                bytes_of(py, &self.offsets).into_any(),
                PyBytes::new(py, &self.data).into_any(),
                valid,
            ],
        )
        .expect("a tuple of three objects")
    }
}

/// A number type whose values are their bytes: no padding, every bit pattern valid.
trait Plain: Copy {}
impl Plain for i32 {}
impl Plain for i64 {}
impl Plain for f64 {}

/// A buffer of plain numbers as its bytes, in the machine's order (numpy's `frombuffer`).
fn bytes_of<'py, T: Plain>(py: Python<'py>, values: &[T]) -> Bound<'py, PyBytes> {
    // SAFETY: T is Plain; the slice is borrowed for the copy.
    let raw = unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    };
    PyBytes::new(py, raw)
}

/// A double holds every integer up to 2**53 exactly; past it, Python's and numpy's
/// rounding is not worth reproducing for a number column.
const EXACT: i64 = 1 << 53;

/// An exact str's UTF-8, or None for anything else (and for a str with lone surrogates).
fn text_of<'a>(value: &'a Bound<'_, PyAny>) -> Option<&'a str> {
    value.downcast_exact::<PyString>().ok()?.to_str().ok()
}

impl Column {
    fn of(kind: &str, capacity: usize) -> PyResult<Column> {
        Ok(match kind {
            "stamp" => Column::Stamp(Vec::with_capacity(capacity)),
            "text" => Column::Text(Text::new(capacity)),
            "hex32" => Column::Hex(32, Text::new(capacity)),
            "hex16" => Column::Hex(16, Text::new(capacity)),
            "float" => Column::Float(Vec::with_capacity(capacity), Vec::with_capacity(capacity)),
            "features" => Column::Features(Text::new(capacity), Vec::with_capacity(capacity)),
            "extra" => Column::Extra(Text::new(capacity)),
            "flags" => Column::Flags(Vec::new()),
            "absent" => Column::Absent,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown capture column kind {other:?}"
                )))
            }
        })
    }

    /// Push record `row`'s value; false when the value is not one this column takes.
    fn push(
        &mut self,
        row: usize,
        value: &Bound<'_, PyAny>,
        merged: &crate::Merged<'_>,
    ) -> PyResult<bool> {
        Ok(match self {
            Column::Stamp(values) => {
                if !value.is_exact_instance_of::<PyInt>() {
                    return Ok(false);
                }
                match value.extract::<i64>() {
                    Ok(v) => {
                        values.push(v);
                        true
                    }
                    Err(_) => false,
                }
            }
            Column::Text(text) => {
                if value.is_none() {
                    text.push(None)
                } else {
                    match text_of(value) {
                        Some(s) => text.push(Some(s.as_bytes())),
                        None => false,
                    }
                }
            }
            Column::Hex(width, text) => {
                if value.is_none() {
                    text.push(None)
                } else if value.is_exact_instance_of::<PyInt>() {
                    match value.extract::<u128>() {
                        Ok(n) => text.push(Some(format!("{n:0w$x}", w = *width).as_bytes())),
                        Err(_) => false,
                    }
                } else {
                    match text_of(value) {
                        Some(s) => text.push(Some(s.as_bytes())),
                        None => false,
                    }
                }
            }
            Column::Float(values, absent) => {
                let number = if value.is_none() {
                    None
                } else if let Ok(f) = value.downcast::<PyFloat>() {
                    // A float or a subclass (numpy's float64): Python's float() of it.
                    Some(f.value())
                } else if value.is_exact_instance_of::<PyInt>() {
                    match value.extract::<i64>() {
                        Ok(i) if (-EXACT..=EXACT).contains(&i) => Some(i as f64),
                        _ => return Ok(false),
                    }
                } else {
                    return Ok(false);
                };
                values.push(number.unwrap_or(f64::NAN));
                absent.push(u8::from(number.is_none()));
                true
            }
            Column::Features(text, nulls) => match &merged.features {
                Some((features, count)) => {
                    let Ok(count) = i32::try_from(*count) else {
                        return Ok(false);
                    };
                    nulls.push(count);
                    text.push(Some(features.as_bytes()))
                }
                None => {
                    nulls.push(0);
                    text.push(None)
                }
            },
            Column::Extra(text) => match merged.extra_text()? {
                Some(extra) => text.push(Some(extra.as_bytes())),
                None => false,
            },
            Column::Flags(flags) => {
                if !merged.flags.is_empty() {
                    flags.push((row, merged.flags.clone()));
                }
                true
            }
            Column::Absent => value.is_none(),
        })
    }

    /// The column as the batch builder reads it (see `resolve_columns`).
    fn into_python(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        Ok(match self {
            Column::Stamp(values) => bytes_of(py, &values).into_any(),
            Column::Text(text) | Column::Hex(_, text) | Column::Extra(text) => {
                text.into_python(py).into_any()
            }
            Column::Float(values, absent) => {
                let absent = if absent.contains(&1) {
                    PyBytes::new(py, &absent).into_any()
                } else {
                    py.None().into_bound(py)
                };
                PyTuple::new(py, [bytes_of(py, &values).into_any(), absent])?.into_any()
            }
            Column::Features(text, nulls) => {
                let (offsets, data, valid) =
                    text.into_python(py)
                        .extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>, Bound<'_, PyAny>)>()?;
                let nulls = bytes_of(py, &nulls).into_any();
                PyTuple::new(py, [offsets, data, valid, nulls])?.into_any()
            }
            Column::Flags(flags) => PyList::new(py, flags)?.into_any(),
            Column::Absent => py.None().into_bound(py),
        })
    }
}

/// A batch of captures as columns, one per capture position, or None unless every
/// capture is taken (see the module docstring).
///
/// `layout` and `positions` are `resolve`'s; `kinds` names each position's column:
/// `stamp`, `text`, `hex32`, `hex16`, `float`, `features`, `extra`, `flags` or
/// `absent`. Each comes back as: `stamp`, int64 bytes; `text`, `hex*` and `extra`,
/// (int32 offsets, UTF-8 data, uint8 validity or None); `float`, (float64 bytes with
/// NaN where absent, uint8 absent marks or None); `features`, the text's three and the
/// int32 null counts (0 where absent); `flags`, a list of (record, [flag, ...]) for the
/// records that have flags; `absent`, None. The features are left for the caller to
/// hold to its size limit; the records come in the batch's order.
#[pyfunction]
pub fn resolve_columns<'py>(
    py: Python<'py>,
    captures: &Bound<'py, PyList>,
    exchange_type: &Bound<'py, PyAny>,
    layout: Positions,
    positions: &Bound<'py, PyDict>,
    kinds: Vec<String>,
) -> PyResult<Option<Bound<'py, PyList>>> {
    // A panic is an ordinary error here: the batch goes one tuple per record.
    unpanicked(|| columns_of(py, captures, exchange_type, layout, positions, &kinds))
}

fn columns_of<'py>(
    py: Python<'py>,
    captures: &Bound<'py, PyList>,
    exchange_type: &Bound<'py, PyAny>,
    layout: Positions,
    positions: &Bound<'py, PyDict>,
    kinds: &[String],
) -> PyResult<Option<Bound<'py, PyList>>> {
    let layout = layout_of(layout)?;
    if kinds.len() != layout.length {
        return Err(PyValueError::new_err(
            "one column kind per capture position",
        ));
    }
    let n = captures.len();
    let mut columns = kinds
        .iter()
        .map(|kind| Column::of(kind, n))
        .collect::<PyResult<Vec<_>>>()?;
    let mut row = 0;
    let taken = each_decoded(
        py,
        captures,
        exchange_type,
        &layout,
        true,
        &mut |_, tuple, exchange, decoded| {
            // Anything unexpected declines the batch, as `resolve` declines a record.
            let pushed = (|| -> PyResult<bool> {
                let Some(merged) = merge(py, &tuple, &exchange, decoded, &layout, positions)?
                else {
                    return Ok(false);
                };
                for (column, value) in columns.iter_mut().zip(&merged.values) {
                    if !column.push(row, value, &merged)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            })();
            row += 1;
            Ok(pushed.unwrap_or(false))
        },
    )?;
    if !taken || row != n {
        return Ok(None);
    }
    let out = columns
        .into_iter()
        .map(|column| column.into_python(py))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Some(PyList::new(py, out)?))
}
