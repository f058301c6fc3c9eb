//! Arrow record batches and Parquet files without pyarrow.
//!
//! The batch builder (`predlog.flush._batch`) decides every value of a batch in Python
//! and hands the columns over in a few plain forms (`build_batch` below lists them).
//! This module turns them into Arrow arrays and writes them to Parquet, so that a
//! server whose only sink is the Parquet layout never loads pyarrow (about 50 MiB a
//! process). A sink that needs pyarrow gets the same batch through the Arrow C Data
//! Interface (`__arrow_c_array__`), without a copy.
//!
//! Nothing here decides a value: a string that is not text is turned into text by the
//! caller's own function, the one the pyarrow path uses, so both paths write the same
//! records (`tests/test_native_table.py` compares them column by column).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard};

use arrow_array::ffi::{from_ffi, FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int16Array, Int32Array, ListArray, RecordBatch,
    StringArray, StructArray, TimestampMicrosecondArray,
};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCapsule, PyList, PySequence, PyString, PyTuple};

fn value_error(message: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(message.to_string())
}

/// A panic as an ordinary error: pyo3 would raise it as PanicException, a
/// BaseException, which the flusher's handlers (rightly) do not catch, and the thread
/// that logs would die. The caller counts the batch failed and goes on.
pub(crate) fn unpanicked<T>(work: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
        .unwrap_or_else(|_| Err(value_error("the extension failed on this batch (a panic)")))
}

/// The record schema, built once from `predlog._record.COLUMNS`.
#[pyclass(frozen, module = "predlog._rust")]
pub struct NativeSchema {
    schema: SchemaRef,
}

fn data_type(kind: &str) -> PyResult<DataType> {
    Ok(match kind {
        "int16" => DataType::Int16,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "float64" => DataType::Float64,
        "string" => DataType::Utf8,
        "timestamp_us_utc" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        // pyarrow's list type: its item field is called "item" and may be null.
        "list_string" => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        other => return Err(value_error(format!("unknown column kind {other:?}"))),
    })
}

impl NativeSchema {
    pub(crate) fn schema_ref(&self) -> SchemaRef {
        self.schema.clone()
    }
}

#[pymethods]
impl NativeSchema {
    /// `columns`: (name, kind, nullable) in file order; `metadata`: the schema's.
    #[new]
    fn new(
        columns: Vec<(String, String, bool)>,
        metadata: Vec<(String, String)>,
    ) -> PyResult<Self> {
        let fields = columns
            .iter()
            .map(|(name, kind, nullable)| Ok(Field::new(name, data_type(kind)?, *nullable)))
            .collect::<PyResult<Vec<_>>>()?;
        let schema = Schema::new(fields).with_metadata(metadata.into_iter().collect());
        Ok(Self {
            schema: Arc::new(schema),
        })
    }
}

/// One record batch, held natively; pyarrow reads it through `__arrow_c_array__`.
#[pyclass(frozen, module = "predlog._rust")]
pub struct NativeBatch {
    batch: RecordBatch,
}

fn capsule<'py, T: 'static + Send>(
    py: Python<'py>,
    value: T,
    name: &str,
) -> PyResult<Bound<'py, PyCapsule>> {
    PyCapsule::new(
        py,
        value,
        Some(CString::new(name).expect("a capsule name has no NUL")),
    )
}

impl NativeBatch {
    pub(crate) fn from_batch(batch: RecordBatch) -> Self {
        Self { batch }
    }
}

#[pymethods]
impl NativeBatch {
    #[getter]
    fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    fn __len__(&self) -> usize {
        self.batch.num_rows()
    }

    /// The Arrow PyCapsule interface: pyarrow.record_batch(batch) takes it without a copy.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
        let _ = requested_schema; // the batch is offered in its own schema only
        let schema =
            FFI_ArrowSchema::try_from(self.batch.schema().as_ref()).map_err(value_error)?;
        let array = FFI_ArrowArray::new(&StructArray::from(self.batch.clone()).into_data());
        Ok((
            capsule(py, schema, "arrow_schema")?,
            capsule(py, array, "arrow_array")?,
        ))
    }

    /// A batch from any object offering `__arrow_c_array__` (a pyarrow.RecordBatch).
    #[staticmethod]
    fn from_arrow(source: &Bound<'_, PyAny>) -> PyResult<Self> {
        let pair = source.call_method0("__arrow_c_array__")?;
        let (schema_capsule, array_capsule): (Bound<'_, PyCapsule>, Bound<'_, PyCapsule>) =
            pair.extract()?;
        check_name(&schema_capsule, "arrow_schema")?;
        check_name(&array_capsule, "arrow_array")?;
        // SAFETY: the capsules are named as the interface says, so they point at the
        // C structs it says. The array is moved out (its release callback is then ours,
        // and the capsule's destructor sees it released); the schema is only borrowed.
        let (array, schema) = unsafe {
            let array = FFI_ArrowArray::from_raw(array_capsule.pointer() as *mut FFI_ArrowArray);
            let schema = &*(schema_capsule.pointer() as *const FFI_ArrowSchema);
            (array, schema)
        };
        let arrow_schema = Schema::try_from(schema).map_err(value_error)?;
        // SAFETY: the array and its schema come from the same producer call.
        let data = unsafe { from_ffi(array, schema) }.map_err(value_error)?;
        let batch = RecordBatch::from(StructArray::from(data));
        let batch = batch
            .with_schema(Arc::new(arrow_schema))
            .map_err(value_error)?;
        Ok(Self { batch })
    }

    /// The batch cut by day (UTC) of a timestamp column: (day since the epoch, rows).
    fn by_day(&self, column: &str) -> PyResult<Vec<(i64, NativeBatch)>> {
        const US_PER_DAY: i64 = 86_400_000_000;
        let stamps = self
            .batch
            .column_by_name(column)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
            .ok_or_else(|| value_error(format!("no microsecond timestamp column {column:?}")))?;
        let days: Vec<i64> = stamps
            .values()
            .iter()
            .map(|us| us.div_euclid(US_PER_DAY))
            .collect();
        let first = days.first().copied().unwrap_or(0);
        if days.iter().all(|d| *d == first) {
            return Ok(vec![(
                first,
                NativeBatch {
                    batch: self.batch.clone(),
                },
            )]);
        }
        let mut distinct = days.clone();
        distinct.sort_unstable();
        distinct.dedup();
        distinct
            .into_iter()
            .map(|day| {
                let mask = BooleanArray::from_iter(days.iter().map(|d| Some(*d == day)));
                let part = arrow_select::filter::filter_record_batch(&self.batch, &mask)
                    .map_err(value_error)?;
                Ok((day, NativeBatch { batch: part }))
            })
            .collect()
    }

    /// Whether the batch has exactly this schema (names, types, nullability).
    fn has_schema(&self, schema: &NativeSchema) -> bool {
        self.batch.schema().fields() == schema.schema.fields()
    }
}

fn check_name(capsule: &Bound<'_, PyCapsule>, expected: &str) -> PyResult<()> {
    match capsule.name()? {
        Some(name) if name.to_bytes() == expected.as_bytes() => Ok(()),
        _ => Err(PyTypeError::new_err(format!(
            "expected an {expected} capsule"
        ))),
    }
}

/// Batches of one schema joined into one.
#[pyfunction]
pub fn concat_batches(
    schema: &NativeSchema,
    batches: Vec<PyRef<'_, NativeBatch>>,
) -> PyResult<NativeBatch> {
    let parts: Vec<&RecordBatch> = batches.iter().map(|b| &b.batch).collect();
    unpanicked(|| {
        let batch =
            arrow_select::concat::concat_batches(&schema.schema, parts).map_err(value_error)?;
        Ok(NativeBatch { batch })
    })
}

/// A fixed-width number type read from the native-endian bytes numpy's `tobytes()` gives.
trait Fixed: Sized + Copy {
    const WIDTH: usize;
    fn read(bytes: &[u8]) -> Self;
}

macro_rules! fixed {
    ($($t:ty),*) => {$(
        impl Fixed for $t {
            const WIDTH: usize = std::mem::size_of::<$t>();
            fn read(bytes: &[u8]) -> Self {
                <$t>::from_ne_bytes(bytes.try_into().expect("chunks of WIDTH bytes"))
            }
        }
    )*};
}
fixed!(f64, i64, i32, i8, u8);

/// The values of a bytes object holding a numpy array's buffer.
fn elements<T: Fixed>(source: &Bound<'_, PyAny>) -> PyResult<Vec<T>> {
    let bytes = source.downcast::<PyBytes>()?.as_bytes();
    if bytes.len() % T::WIDTH != 0 {
        return Err(value_error("a buffer of partial values"));
    }
    Ok(bytes.chunks_exact(T::WIDTH).map(T::read).collect())
}

/// Text for one value of a string column: str as it is, None as null, anything else
/// (and a str that is not valid UTF-8, with lone surrogates) through `coerce`.
fn push_text(
    value: &Bound<'_, PyAny>,
    coerce: &Bound<'_, PyAny>,
    data: &mut Vec<u8>,
    offsets: &mut Vec<i32>,
    valid: &mut Vec<bool>,
) -> PyResult<()> {
    let text = if value.is_none() {
        None
    } else if let Some(s) = value
        .downcast_exact::<PyString>()
        .ok()
        .and_then(|s| s.to_str().ok().map(str::to_owned))
    {
        Some(s)
    } else {
        let coerced = coerce.call1((value,))?;
        if coerced.is_none() {
            None
        } else {
            Some(coerced.downcast::<PyString>()?.to_str()?.to_owned())
        }
    };
    match text {
        Some(t) => {
            data.extend_from_slice(t.as_bytes());
            valid.push(true);
        }
        None => valid.push(false),
    }
    let end = i32::try_from(data.len()).map_err(|_| value_error("string column over 2 GiB"))?;
    offsets.push(end);
    Ok(())
}

fn strings(values: &Bound<'_, PyAny>, coerce: &Bound<'_, PyAny>) -> PyResult<ArrayRef> {
    let sequence = values.downcast::<PySequence>()?;
    let n = sequence.len()?;
    let mut data = Vec::new();
    let mut offsets = Vec::with_capacity(n + 1);
    let mut valid = Vec::with_capacity(n);
    offsets.push(0);
    for value in sequence.try_iter()? {
        push_text(&value?, coerce, &mut data, &mut offsets, &mut valid)?;
    }
    let nulls = NullBuffer::from(valid);
    let array = StringArray::try_new(
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Buffer::from_vec(data),
        (nulls.null_count() > 0).then_some(nulls),
    )
    .map_err(value_error)?;
    Ok(Arc::new(array))
}

fn mask_of(values: &[f64], nan_is_null: bool) -> Option<NullBuffer> {
    if !nan_is_null || !values.iter().any(|v| v.is_nan()) {
        return None;
    }
    Some(NullBuffer::from(
        values.iter().map(|v| !v.is_nan()).collect::<Vec<_>>(),
    ))
}

/// One column in one of the forms the batch builder gives (the first item names it):
///
/// - `("strings", sequence)`: str or None, anything else through `coerce`;
/// - `("constant", value)`: one str, int or None for every row;
/// - `("float64", buffer, nan_is_null)`: float64 values, NaN null if asked;
/// - `("int32", sequence)`: int or None;
/// - `("int32s", buffer)`: int32 values without nulls;
/// - `("timestamps", buffer)`: int64 microseconds;
/// - `("text", offsets, data, valid)`: an Arrow string column's int32 offsets and
///   UTF-8 bytes, with a bool validity buffer or None;
/// - `("codes", buffer, labels)`: int8 codes into `labels`, negative for null;
/// - `("lists", sequence)`: lists of str, or None for an empty list everywhere.
fn column(
    spec: &Bound<'_, PyTuple>,
    field: &Field,
    rows: usize,
    coerce: &Bound<'_, PyAny>,
) -> PyResult<ArrayRef> {
    let kind: String = spec.get_item(0)?.extract()?;
    let item = |i: usize| spec.get_item(i);
    let array: ArrayRef = match kind.as_str() {
        "strings" => strings(&item(1)?, coerce)?,
        "constant" => {
            let value = item(1)?;
            match field.data_type() {
                DataType::Utf8 => {
                    let text: Option<String> = value.extract()?;
                    Arc::new(StringArray::from(vec![text.as_deref(); rows]))
                }
                DataType::Int16 => {
                    let number: Option<i16> = value.extract()?;
                    Arc::new(Int16Array::from(vec![number; rows]))
                }
                other => return Err(value_error(format!("no constant column of type {other}"))),
            }
        }
        "float64" => {
            let values = elements::<f64>(&item(1)?)?;
            let nulls = mask_of(&values, item(2)?.extract()?);
            Arc::new(Float64Array::new(ScalarBuffer::from(values), nulls))
        }
        "int32" => {
            let values: Vec<Option<i32>> = item(1)?.extract()?;
            Arc::new(Int32Array::from(values))
        }
        "int32s" => Arc::new(Int32Array::from(elements::<i32>(&item(1)?)?)),
        "timestamps" => {
            let values = elements::<i64>(&item(1)?)?;
            Arc::new(
                TimestampMicrosecondArray::new(ScalarBuffer::from(values), None)
                    .with_timezone("UTC"),
            )
        }
        "text" => {
            let offsets = elements::<i32>(&item(1)?)?;
            let data = elements::<u8>(&item(2)?)?;
            let valid = item(3)?;
            let nulls = if valid.is_none() {
                None
            } else {
                Some(NullBuffer::from(
                    elements::<u8>(&valid)?
                        .iter()
                        .map(|v| *v != 0)
                        .collect::<Vec<_>>(),
                ))
            };
            Arc::new(
                StringArray::try_new(
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    Buffer::from_vec(data),
                    nulls,
                )
                .map_err(value_error)?,
            )
        }
        "codes" => {
            let codes = elements::<i8>(&item(1)?)?;
            let labels: Vec<String> = item(2)?.extract()?;
            let texts = codes.iter().map(|c| {
                usize::try_from(*c)
                    .ok()
                    .and_then(|c| labels.get(c))
                    .map(String::as_str)
            });
            Arc::new(StringArray::from_iter(texts))
        }
        "lists" => {
            let values = item(1)?;
            let (offsets, texts): (Vec<i32>, Vec<Option<String>>) = if values.is_none() {
                (vec![0; rows + 1], Vec::new())
            } else {
                let lists: Vec<Vec<String>> = values.extract()?;
                let mut offsets = Vec::with_capacity(lists.len() + 1);
                let mut texts = Vec::new();
                offsets.push(0);
                for list in lists {
                    texts.extend(list.into_iter().map(Some));
                    offsets.push(i32::try_from(texts.len()).map_err(value_error)?);
                }
                (offsets, texts)
            };
            let DataType::List(item_field) = field.data_type() else {
                return Err(value_error(format!(
                    "{} is not a list column",
                    field.name()
                )));
            };
            Arc::new(
                ListArray::try_new(
                    item_field.clone(),
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    Arc::new(StringArray::from(texts)),
                    None,
                )
                .map_err(value_error)?,
            )
        }
        other => return Err(value_error(format!("unknown column form {other:?}"))),
    };
    if array.len() != rows {
        return Err(value_error(format!(
            "column {} has {} values for {rows} rows",
            field.name(),
            array.len()
        )));
    }
    Ok(array)
}

/// A batch of `rows` records from one column spec per schema field, in order (see
/// `column` for the forms). `coerce` turns a value of a string column that is not text
/// into text or None, as the pyarrow path does.
#[pyfunction]
pub fn build_batch(
    schema: &NativeSchema,
    columns: &Bound<'_, PyList>,
    rows: usize,
    coerce: &Bound<'_, PyAny>,
) -> PyResult<NativeBatch> {
    unpanicked(|| build(schema, columns, rows, coerce))
}

fn build(
    schema: &NativeSchema,
    columns: &Bound<'_, PyList>,
    rows: usize,
    coerce: &Bound<'_, PyAny>,
) -> PyResult<NativeBatch> {
    let fields = schema.schema.fields();
    if columns.len() != fields.len() {
        return Err(value_error(format!(
            "{} columns for {} fields",
            columns.len(),
            fields.len()
        )));
    }
    let arrays = columns
        .iter()
        .zip(fields.iter())
        .map(|(spec, field)| column(spec.downcast::<PyTuple>()?, field, rows, coerce))
        .collect::<PyResult<Vec<_>>>()?;
    let batch = RecordBatch::try_new(schema.schema.clone(), arrays).map_err(value_error)?;
    Ok(NativeBatch { batch })
}

/// One Parquet file being written: a row group per written batch, the footer at `close`.
#[pyclass(frozen, module = "predlog._rust")]
pub struct ParquetFile {
    // A lock only to be shared: the sink writes from its flusher thread and closes
    // from whichever thread closes the logger, never both at once.
    writer: Mutex<Option<ArrowWriter<File>>>,
    fd: i32,
}

fn io_error(message: impl std::fmt::Display) -> PyErr {
    PyOSError::new_err(message.to_string())
}

#[pymethods]
impl ParquetFile {
    /// Opens `path` for writing (truncating it). `compression` is "zstd" or "none";
    /// dictionary encoding and statistics only for the columns named (Parquet column
    /// paths, dotted).
    #[new]
    fn new(
        py: Python<'_>,
        path: String,
        schema: &NativeSchema,
        compression: &str,
        dictionary: Vec<String>,
        statistics: Vec<String>,
    ) -> PyResult<Self> {
        let codec = match compression {
            "zstd" => Compression::ZSTD(ZstdLevel::default()),
            "none" => Compression::UNCOMPRESSED,
            other => {
                return Err(value_error(format!(
                    "compression {other:?} is not built in"
                )))
            }
        };
        let mut props = WriterProperties::builder()
            .set_compression(codec)
            // Lists as the Parquet spec names them ("element"), as pyarrow writes them.
            .set_coerce_types(true)
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None);
        let leaf =
            |dotted: &String| ColumnPath::new(dotted.split('.').map(str::to_owned).collect());
        for name in &dictionary {
            props = props.set_column_dictionary_enabled(leaf(name), true);
        }
        for name in &statistics {
            props = props.set_column_statistics_enabled(leaf(name), EnabledStatistics::Chunk);
        }
        let (props, arrow_schema) = (props.build(), schema.schema.clone());
        // Without the GIL, as pyarrow opens files: a disk that hangs stalls the flusher,
        // never the threads serving requests.
        let (writer, fd) = py.allow_threads(move || {
            let file = File::create(path).map_err(io_error)?;
            let fd = file.as_raw_fd();
            let mut writer =
                ArrowWriter::try_new(file, arrow_schema, Some(props)).map_err(value_error)?;
            // The magic bytes, at once: a full disk refuses the file here, before any rows.
            writer.sync().map_err(io_error)?;
            Ok::<_, PyErr>((writer, fd))
        })?;
        Ok(Self {
            writer: Mutex::new(Some(writer)),
            fd,
        })
    }

    /// Appends the batch as one row group.
    fn write(&self, py: Python<'_>, batch: &NativeBatch) -> PyResult<()> {
        let rows = batch.batch.clone();
        unpanicked(|| {
            py.allow_threads(|| {
                let mut guard = self.lock();
                let writer = guard.as_mut().ok_or_else(|| io_error("file closed"))?;
                writer.write(&rows).map_err(io_error)?;
                writer.flush().map_err(io_error)?;
                // To the file now, as pyarrow writes: a full disk fails this batch, not a
                // later one whose rows would then be lost with the file.
                writer.sync().map_err(io_error)
            })
        })
    }

    /// Bytes written so far (the footer not included until `close`).
    #[getter]
    fn size(&self, py: Python<'_>) -> usize {
        py.allow_threads(|| self.lock().as_ref().map_or(0, ArrowWriter::bytes_written))
    }

    fn fileno(&self) -> i32 {
        self.fd
    }

    /// Writes the footer, fsyncs and closes the file.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        unpanicked(|| {
            py.allow_threads(|| {
                let writer = self.lock().take().ok_or_else(|| io_error("file closed"))?;
                let file = writer.into_inner().map_err(io_error)?;
                file.sync_all().map_err(io_error)
            })
        })
    }

    /// Closes the file without a footer (what was written is thrown away by the caller).
    fn abandon(&self, py: Python<'_>) {
        py.allow_threads(|| drop(self.lock().take()));
    }
}

impl ParquetFile {
    fn lock(&self) -> MutexGuard<'_, Option<ArrowWriter<File>>> {
        // A panic while writing leaves a writer no one should trust; the caller abandons it.
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeSchema>()?;
    m.add_class::<NativeBatch>()?;
    m.add_class::<ParquetFile>()?;
    m.add_function(wrap_pyfunction!(build_batch, m)?)?;
    m.add_function(wrap_pyfunction!(concat_batches, m)?)?;
    Ok(())
}
