//! predlog's flusher, natively: captured HTTP exchanges decoded in batches outside the GIL.
//!
//! `resolve` takes a drained batch of captures and, for each one holding a middleware
//! exchange, does what `predlog.flush._exchange.ExchangeDecoder.resolve` and the feature
//! encoding after it do: parse the request and response JSON, undo BentoML's wrapping,
//! flatten nested objects, find the score and decision, and write the features as JSON
//! text. Reading the exchanges and building the results need the GIL; parsing,
//! flattening and writing, the bulk of the work, run with it released, so request
//! threads go on meanwhile.
//!
//! The Python decoder is the reference. Anything this module cannot reproduce exactly
//! (JSON only a lenient parser accepts, recorded features to merge, a user extractor, a
//! score that is an object...) is declined, record by record: the caller decodes those
//! in Python. A record is never decoded differently here than there; the differential
//! tests (`tests/test_native_decode.py`) hold both to that.

mod columns;
mod format;
mod json;
mod records;
mod split;
mod table;
mod walk;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::walk::{
    decode_request, decode_response, Found, Options, Path, RequestOutcome, ResponseOutcome, Scalar,
};

/// Features already written as JSON text, with what the batch builder needs of them.
#[pyclass(frozen, module = "predlog._rust")]
struct Encoded {
    /// The flattened features as orjson would write them.
    #[pyo3(get)]
    text: String,
    /// How many features are null.
    #[pyo3(get)]
    nulls: usize,
    /// Whether the text is longer, in UTF-8 bytes, than the logger's max_feature_bytes.
    #[pyo3(get)]
    oversize: bool,
}

/// A record's extra map already written as JSON text: the exchange's method, path and
/// status, when nothing else (recorded fields of no place, an audit rule) needs the map.
#[pyclass(frozen, module = "predlog._rust")]
struct EncodedExtra {
    #[pyo3(get)]
    text: String,
}

/// Where things sit in a capture tuple, given by the caller (predlog._capture owns it).
struct Layout {
    length: usize,
    features: usize,
    score: usize,
    decision: usize,
    extra: usize,
    trace_id: usize,
    span_id: usize,
    flags: usize,
}

/// What one exchange gave under the GIL, owned, so that it can cross into the GIL-free part.
struct Job {
    options: usize,
    flags: Vec<String>,
    request: Result<Body, &'static str>,
    response: Result<Body, &'static str>,
}

impl Job {
    /// The bytes copied out of Python for this job.
    fn copied(&self) -> usize {
        let copied = |body: &Result<Body, &str>| match body {
            Ok(Body::Joined(bytes)) => bytes.len(),
            _ => 0,
        };
        copied(&self.request) + copied(&self.response)
    }
}

/// A body to parse without the GIL: one chunk's bytes where they are, or several
/// chunks joined into a copy.
enum Body {
    Shared { address: usize, length: usize },
    Joined(Vec<u8>),
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Body::Shared { length, .. } => *length,
            Body::Joined(bytes) => bytes.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            // SAFETY: the bytes object is kept alive (`alive` in `resolve`) until the
            // group this job belongs to is parsed, and its buffer is immutable.
            Body::Shared { address, length } => unsafe {
                std::slice::from_raw_parts(*address as *const u8, *length)
            },
            Body::Joined(bytes) => bytes,
        }
    }
}

/// A job, with the capture and exchange it was read from.
type Taken<'py> = (Job, Bound<'py, PyTuple>, Bound<'py, PyAny>);

/// Bodies copied per group, at most (one body past it), and records per group. Small
/// groups matter twice: the copies stay small beside the ring, and the stretches with
/// the GIL held (reading one group, building its results) stay well under the
/// interpreter's switch interval, since no thread can take the GIL during a native call;
/// between groups, parsing without it, a waiting request thread gets it at once.
const GROUP_BYTES: usize = 1 << 20;
const GROUP_RECORDS: usize = 256;

/// What became of one job outside the GIL.
struct Decoded {
    flags: Vec<String>,
    features: Option<(String, usize)>,
    score: Option<Found>,
    decision: Option<Found>,
}

fn is_json(content_type: &Bound<'_, PyAny>) -> PyResult<bool> {
    if content_type.is_none() {
        return Ok(true);
    }
    let bytes = content_type.downcast::<PyBytes>()?.as_bytes();
    Ok(bytes.windows(4).any(|w| w.eq_ignore_ascii_case(b"json")))
}

/// The chunks joined, or why they are not a body to parse. Mirrors `_request_features`
/// and `_response_values`: truncated first, then empty, then the content type.
fn body<'py>(
    chunks: &Bound<'py, PyAny>,
    size: usize,
    content_type: &Bound<'py, PyAny>,
    truncated: &'static str,
    not_json: &'static str,
    alive: &mut Vec<Bound<'py, PyAny>>,
) -> PyResult<Result<Body, &'static str>> {
    let list = chunks.downcast::<PyList>()?;
    let body = if list.len() == 1 {
        // The usual case: one chunk, read in place. The chunk is kept alive until the
        // group is parsed, and a bytes object's buffer never changes or moves.
        let chunk = list.get_item(0)?;
        let bytes = chunk.downcast::<PyBytes>()?.as_bytes();
        let shared = Body::Shared {
            address: bytes.as_ptr() as usize,
            length: bytes.len(),
        };
        alive.push(chunk);
        shared
    } else {
        let mut joined = Vec::new();
        for chunk in list.iter() {
            joined.extend_from_slice(chunk.downcast::<PyBytes>()?.as_bytes());
        }
        Body::Joined(joined)
    };
    if size > body.len() {
        return Ok(Err(truncated));
    }
    if body.len() == 0 {
        return Ok(Err(""));
    }
    if !is_json(content_type)? {
        return Ok(Err(not_json));
    }
    Ok(Ok(body))
}

/// The decoding options of the exchange's decoder, cached by the decoder's identity;
/// None when it cannot decode natively (a user extractor).
fn options_of(
    decoder: &Bound<'_, PyAny>,
    cache: &mut Vec<(usize, Option<usize>)>,
    options: &mut Vec<Options>,
) -> PyResult<Option<usize>> {
    let key = decoder.as_ptr() as usize;
    if let Some((_, index)) = cache.iter().find(|(k, _)| *k == key) {
        return Ok(*index);
    }
    let native = decoder.getattr(intern!(decoder.py(), "native_options"))?;
    let index = if native.is_none() {
        None
    } else {
        let (features_field, score_field, decision_field): (
            Option<String>,
            Option<String>,
            Option<String>,
        ) = native.extract()?;
        options.push(Options {
            features_field,
            score_field,
            decision_field,
        });
        Some(options.len() - 1)
    };
    cache.push((key, index));
    Ok(index)
}

/// The flags and the bodies of one exchange, or None to decline it.
fn read_job<'py>(
    exchange: &Bound<'py, PyAny>,
    options: usize,
    flags: &mut Vec<String>,
    alive: &mut Vec<Bound<'py, PyAny>>,
) -> PyResult<Option<Job>> {
    let py = exchange.py();
    // `_http_extra`'s flags, in its order.
    if !exchange
        .getattr(intern!(py, "invalid_request_id"))?
        .is_none()
    {
        flags.push("request_id_invalid".to_owned());
    }
    if exchange
        .getattr(intern!(py, "request_id_repeated"))?
        .is_truthy()?
    {
        flags.push("request_id_repeated".to_owned());
    }
    if exchange
        .getattr(intern!(py, "handler_failed"))?
        .is_truthy()?
    {
        flags.push("handler_exception".to_owned());
    }
    let status: i64 = exchange.getattr(intern!(py, "status"))?.extract()?;
    if status >= 400 {
        flags.push(format!("http_status_{status}"));
    }
    let request = body(
        &exchange.getattr(intern!(py, "request_chunks"))?,
        exchange.getattr(intern!(py, "request_size"))?.extract()?,
        &exchange.getattr(intern!(py, "request_content_type"))?,
        "request_body_truncated",
        "request_body_not_json",
        alive,
    )?
    .map_err(|why| {
        if why.is_empty() {
            "request_body_empty"
        } else {
            why
        }
    });
    let streamed = exchange.getattr(intern!(py, "streamed"))?.is_truthy()?;
    let parts: i64 = exchange.getattr(intern!(py, "response_parts"))?.extract()?;
    let response = if streamed && parts > 1 {
        Err("response_streamed")
    } else {
        body(
            &exchange.getattr(intern!(py, "response_chunks"))?,
            exchange.getattr(intern!(py, "response_size"))?.extract()?,
            &exchange.getattr(intern!(py, "response_content_type"))?,
            "response_body_truncated",
            "response_not_json",
            alive,
        )?
    };
    Ok(Some(Job {
        options,
        flags: std::mem::take(flags),
        request,
        response,
    }))
}

/// Parse and write one job: the GIL-free part.
fn decode(job: Job, options: &[Options]) -> Option<Decoded> {
    let option = &options[job.options];
    let mut flags = job.flags;
    let features = match &job.request {
        Err(flag) => {
            flags.push((*flag).to_owned());
            None
        }
        Ok(body) => match decode_request(body.bytes(), option) {
            RequestOutcome::Declined => return None,
            RequestOutcome::Flagged(flag) => {
                flags.push(flag.to_owned());
                None
            }
            RequestOutcome::Features(text, nulls) => Some((text, nulls)),
        },
    };
    let (score, decision) = match &job.response {
        // An empty response says nothing, and is not flagged.
        Err(flag) => {
            if !flag.is_empty() {
                flags.push((*flag).to_owned());
            }
            (None, None)
        }
        Ok(body) => match decode_response(body.bytes(), option) {
            ResponseOutcome::Declined => return None,
            ResponseOutcome::Values(score, decision) => (score, decision),
        },
    };
    Some(Decoded {
        flags,
        features,
        score,
        decision,
    })
}

/// A score or decision as the Python decoder holds it; None for arrays and objects, whose
/// text in a string column would be Python's repr of them (declined).
fn to_python<'py>(py: Python<'py>, value: &Scalar) -> PyResult<Option<Bound<'py, PyAny>>> {
    Ok(Some(match value {
        Scalar::Null => py.None().into_bound(py),
        Scalar::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Scalar::Int(i) => i.into_pyobject(py)?.into_any(),
        Scalar::UInt(u) => u.into_pyobject(py)?.into_any(),
        // `-0` or `-0.0`: the parser does not say which (see format.rs).
        Scalar::Float(f) if *f == 0.0 && f.is_sign_negative() => return Ok(None),
        Scalar::Float(f) => PyFloat::new(py, *f).into_any(),
        Scalar::Str(s) => PyString::new(py, s).into_any(),
        Scalar::Container => return Ok(None),
    }))
}

/// A trace or span id the middleware kept as an integer, as the hex text of the record.
fn hex_id<'py>(value: &Bound<'py, PyAny>, width: usize) -> PyResult<Option<Bound<'py, PyAny>>> {
    if !value.is_exact_instance_of::<PyInt>() {
        return Ok(Some(value.clone()));
    }
    let number: u128 = match value.extract() {
        Ok(n) => n,
        Err(_) => return Ok(None),
    };
    Ok(Some(
        PyString::new(value.py(), &format!("{number:0width$x}")).into_any(),
    ))
}

/// One decoded exchange merged with its capture and what the handler recorded: the
/// capture's values, the features as text, the flags, and what the extra map says.
struct Merged<'py> {
    /// The capture's values with the response's and the handler's in place; the
    /// features, extra and flags positions still hold what the capture had.
    values: Vec<Bound<'py, PyAny>>,
    features: Option<(String, usize)>,
    flags: Vec<String>,
    method: Bound<'py, PyAny>,
    path: Bound<'py, PyAny>,
    status: Bound<'py, PyAny>,
    invalid: Option<String>,
    /// Where the score and decision were read, for the extra map (`SOURCE_KEYS`).
    sources: [(&'static str, Option<Path>); 2],
    /// Recorded fields without a place in a capture, in the order recorded.
    unplaced: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
}

/// The keys the extra map writes before the recorded fields without a place; a recorded
/// field of one of these names replaces the value in place, which only Python does.
const EXTRA_KEYS: [&str; 6] = [
    "http_method",
    "http_path",
    "http_status",
    "invalid_request_id",
    "score_field",
    "decision_field",
];

/// The capture, the decoded exchange and the handler's recorded fields as one record's
/// values, or None to decline it.
fn merge<'py>(
    py: Python<'py>,
    capture: &Bound<'py, PyTuple>,
    exchange: &Bound<'py, PyAny>,
    decoded: Decoded,
    layout: &Layout,
    positions: &Bound<'py, PyDict>,
) -> PyResult<Option<Merged<'py>>> {
    let mut values: Vec<Bound<'py, PyAny>> = capture.iter().collect();
    let mut sources: [(&'static str, Option<Path>); 2] =
        [("score_field", None), ("decision_field", None)];
    let invalid = exchange.getattr(intern!(py, "invalid_request_id"))?;
    let invalid: Option<String> = if invalid.is_none() {
        None
    } else {
        Some(invalid.extract::<String>()?.chars().take(256).collect())
    };
    let found = [
        (layout.score, decoded.score),
        (layout.decision, decoded.decision),
    ];
    for (source, (position, found)) in sources.iter_mut().zip(found) {
        if let Some(found) = found {
            match to_python(py, &found.value)? {
                Some(v) => values[position] = v,
                None => return Ok(None),
            }
            source.1 = found.path;
        }
    }
    // What the handler recorded wins over the bodies; names without a place go to extra.
    let fields = exchange.getattr(intern!(py, "fields"))?;
    let fields = fields.downcast::<PyDict>()?;
    // Read again now: a thread of the handler's may have recorded features since the
    // exchange was read, and those Python merges.
    if fields.contains(intern!(py, "features"))? {
        return Ok(None);
    }
    let mut unplaced = Vec::new();
    for (name, value) in fields.iter() {
        let name_text = name.downcast::<PyString>()?.to_cow()?;
        if sources.iter().any(|(key, _)| name_text == *key) {
            return Ok(None); // a recorded name clashing with a source: Python's order rules
        }
        // A value the handler recorded is the handler's, not read from the response.
        match name_text.as_ref() {
            "score" => sources[0].1 = None,
            "decision" => sources[1].1 = None,
            _ => {}
        }
        match positions.get_item(&name)? {
            Some(position) => values[position.extract::<usize>()?] = value,
            None => unplaced.push((name, value)),
        }
    }
    let mut flags = decoded.flags;
    if values[layout.decision].is_none() {
        flags.push("decision_missing".to_owned());
    }
    Ok(Some(Merged {
        values,
        features: decoded.features,
        flags,
        method: exchange.getattr(intern!(py, "method"))?,
        path: exchange.getattr(intern!(py, "path"))?,
        status: exchange.getattr(intern!(py, "status"))?,
        invalid,
        sources,
        unplaced,
    }))
}

/// A recorded value as orjson writes it, when it is one whose text is certain: str, bool,
/// None, an int of 64 bits, a finite float (not a negative zero). False for anything else.
fn write_recorded(out: &mut String, value: &Bound<'_, PyAny>) -> bool {
    if value.is_none() {
        out.push_str("null");
    } else if let Ok(b) = value.downcast_exact::<PyBool>() {
        out.push_str(if b.is_true() { "true" } else { "false" });
    } else if let Ok(s) = value.downcast_exact::<PyString>() {
        match s.to_str() {
            Ok(text) => format::write_string(out, text),
            Err(_) => return false,
        }
    } else if value.is_exact_instance_of::<PyInt>() {
        if let Ok(i) = value.extract::<i64>() {
            out.push_str(itoa::Buffer::new().format(i));
        } else if let Ok(u) = value.extract::<u64>() {
            out.push_str(itoa::Buffer::new().format(u));
        } else {
            return false;
        }
    } else if let Ok(f) = value.downcast_exact::<PyFloat>() {
        let f = f.value();
        if !f.is_finite() || (f == 0.0 && f.is_sign_negative()) {
            return false;
        }
        format::write_float(out, f);
    } else {
        return false;
    }
    true
}

impl<'py> Merged<'py> {
    /// The extra map as orjson writes it (`_decode.extra_json`), or None when a recorded
    /// field is one only Python writes (see `write_recorded`, `EXTRA_KEYS`).
    fn extra_text(&self) -> PyResult<Option<String>> {
        let mut text = String::with_capacity(160);
        text.push_str("{\"http_method\":");
        format::write_string(&mut text, &self.method.extract::<String>()?);
        text.push_str(",\"http_path\":");
        format::write_string(&mut text, &self.path.extract::<String>()?);
        text.push_str(",\"http_status\":");
        text.push_str(&self.status.extract::<i64>()?.to_string());
        if let Some(id) = &self.invalid {
            text.push_str(",\"invalid_request_id\":");
            format::write_string(&mut text, id);
        }
        for (key, path) in &self.sources {
            if let Some(path) = path {
                text.push_str(",\"");
                text.push_str(key);
                text.push_str("\":");
                format::write_string(&mut text, path);
            }
        }
        for (name, value) in &self.unplaced {
            let Ok(name) = name.downcast::<PyString>()?.to_str() else {
                return Ok(None);
            };
            if EXTRA_KEYS.contains(&name) {
                return Ok(None);
            }
            text.push(',');
            format::write_string(&mut text, name);
            text.push(':');
            if !write_recorded(&mut text, value) {
                return Ok(None);
            }
        }
        text.push('}');
        Ok(Some(text))
    }

    /// The extra map as a dict, for the batch builder to write (an audit rule reads it).
    fn extra_dict(self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let extra = PyDict::new(py);
        extra.set_item(intern!(py, "http_method"), self.method)?;
        extra.set_item(intern!(py, "http_path"), self.path)?;
        extra.set_item(intern!(py, "http_status"), self.status)?;
        if let Some(id) = self.invalid {
            extra.set_item(intern!(py, "invalid_request_id"), id)?;
        }
        for (key, path) in &self.sources {
            if let Some(path) = path {
                extra.set_item(key, path.as_ref())?;
            }
        }
        for (name, value) in self.unplaced {
            extra.set_item(name, value)?;
        }
        Ok(extra)
    }
}

/// The resolved capture of one decoded exchange, or None to decline it.
#[allow(clippy::too_many_arguments)]
fn assemble<'py>(
    py: Python<'py>,
    capture: &Bound<'py, PyTuple>,
    exchange: &Bound<'py, PyAny>,
    decoded: Decoded,
    layout: &Layout,
    positions: &Bound<'py, PyDict>,
    max_bytes: usize,
    extra_maps: bool,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let Some(mut merged) = merge(py, capture, exchange, decoded, layout, positions)? else {
        return Ok(None);
    };
    let features = match merged.features.take() {
        Some((text, nulls)) => {
            let oversize = text.len() > max_bytes;
            Bound::new(
                py,
                Encoded {
                    text,
                    nulls,
                    oversize,
                },
            )?
            .into_any()
        }
        None => py.None().into_bound(py),
    };
    let flags: Vec<Bound<'py, PyString>> =
        merged.flags.iter().map(|f| PyString::new(py, f)).collect();
    let extra = if extra_maps || !merged.unplaced.is_empty() {
        None
    } else {
        merged.extra_text()?
    };
    let mut values = std::mem::take(&mut merged.values);
    values[layout.extra] = match extra {
        Some(text) => Bound::new(py, EncodedExtra { text })?.into_any(),
        None => merged.extra_dict(py)?.into_any(),
    };
    values[layout.features] = features;
    values[layout.flags] = PyTuple::new(py, flags)?.into_any();
    match hex_id(&values[layout.trace_id], 32)? {
        Some(v) => values[layout.trace_id] = v,
        None => return Ok(None),
    }
    match hex_id(&values[layout.span_id], 16)? {
        Some(v) => values[layout.span_id] = v,
        None => return Ok(None),
    }
    Ok(Some(untrack(PyTuple::new(py, values)?)))
}

/// The tuple, no longer tracked by the cyclic garbage collector.
///
/// A capture is referred to only by the ring (or the flusher's batch) and refers to
/// nothing that refers back to it, so it can never be part of a cycle; tracked, it
/// would only be walked by every collection while it waits, and promoted into the old
/// generation, whose growth is what sets off the full collections that walk the whole
/// application (tens of milliseconds each). CPython untracks a tuple of untracked
/// values by itself, at the first collection that meets it; a middleware capture holds
/// its exchange, which is tracked, so it never would.
fn untrack(tuple: Bound<'_, PyTuple>) -> Bound<'_, PyTuple> {
    // SAFETY: a tuple is a GC-managed object; untracking a tracked or an untracked one
    // is allowed, and a reference to it is held for the call.
    unsafe { pyo3::ffi::PyObject_GC_UnTrack(tuple.as_ptr().cast()) };
    tuple
}

/// A capture as it goes into the ring: the tuple itself, untracked (see `untrack`).
#[pyfunction]
fn untracked(capture: Bound<'_, PyTuple>) -> Bound<'_, PyTuple> {
    untrack(capture)
}

/// Whether a capture is one this module takes: the layout's length, an exchange, and
/// nothing the Python decoder would have to merge (given flags or extra, recorded features).
fn eligible<'py>(
    capture: &Bound<'py, PyAny>,
    exchange_type: &Bound<'py, PyAny>,
    layout: &Layout,
) -> PyResult<Option<(Bound<'py, PyTuple>, Bound<'py, PyAny>)>> {
    let py = capture.py();
    let Ok(tuple) = capture.downcast::<PyTuple>() else {
        return Ok(None);
    };
    if tuple.len() != layout.length {
        return Ok(None);
    }
    let exchange = tuple.get_item(layout.features)?;
    if !exchange.get_type().is(exchange_type) {
        return Ok(None);
    }
    if !tuple.get_item(layout.flags)?.is_none() || !tuple.get_item(layout.extra)?.is_none() {
        return Ok(None);
    }
    let fields = exchange.getattr(intern!(py, "fields"))?;
    if fields
        .downcast::<PyDict>()?
        .contains(intern!(py, "features"))?
    {
        return Ok(None);
    }
    Ok(Some((tuple.clone(), exchange)))
}

/// A capture layout as the caller gives it: (length, features, score, decision, extra,
/// trace_id, span_id, flags).
type Positions = (usize, usize, usize, usize, usize, usize, usize, usize);

/// The layout given as `Positions`, checked.
fn layout_of(layout: Positions) -> PyResult<Layout> {
    let layout = Layout {
        length: layout.0,
        features: layout.1,
        score: layout.2,
        decision: layout.3,
        extra: layout.4,
        trace_id: layout.5,
        span_id: layout.6,
        flags: layout.7,
    };
    let indices = [
        layout.features,
        layout.score,
        layout.decision,
        layout.extra,
        layout.trace_id,
        layout.span_id,
        layout.flags,
    ];
    if indices.iter().any(|i| *i >= layout.length) {
        return Err(PyValueError::new_err(
            "a capture position lies outside the layout",
        ));
    }
    Ok(layout)
}

/// One decoded exchange as `each_decoded` hands it over: its index in the batch, the
/// capture, the exchange, and what decoding gave.
type Visit<'a, 'py> =
    dyn FnMut(usize, Bound<'py, PyTuple>, Bound<'py, PyAny>, Decoded) -> PyResult<bool> + 'a;

/// Read, decode and hand over each capture holding an exchange this module can decode,
/// in order. A capture it cannot take is skipped, unless `strict`: then the whole walk
/// stops and answers false, as it does when `visit` answers false.
fn each_decoded<'py>(
    py: Python<'py>,
    captures: &Bound<'py, PyList>,
    exchange_type: &Bound<'py, PyAny>,
    layout: &Layout,
    strict: bool,
    visit: &mut Visit<'_, 'py>,
) -> PyResult<bool> {
    let mut cache = Vec::new();
    let mut options = Vec::new();
    let mut taken: Vec<(usize, Bound<'py, PyTuple>, Bound<'py, PyAny>)> = Vec::new();
    let mut jobs: Vec<Job> = Vec::new();
    let mut copied = 0;
    // The chunks read in place by the group's jobs: alive until the group is parsed.
    let mut alive: Vec<Bound<'py, PyAny>> = Vec::new();
    let mut flags = Vec::new();
    let count = captures.len();
    for (i, capture) in captures.iter().enumerate() {
        // Anything unexpected about one capture declines it alone: Python resolves it
        // and reports what is wrong with it.
        let read = (|| -> PyResult<Option<Taken<'py>>> {
            let Some((tuple, exchange)) = eligible(&capture, exchange_type, layout)? else {
                return Ok(None);
            };
            let decoder = exchange.getattr(intern!(py, "decoder"))?;
            let Some(option) = options_of(&decoder, &mut cache, &mut options)? else {
                return Ok(None);
            };
            flags.clear();
            let job = read_job(&exchange, option, &mut flags, &mut alive)?;
            Ok(job.map(|job| (job, tuple, exchange)))
        })();
        match read {
            Ok(Some((job, tuple, exchange))) => {
                copied += job.copied();
                jobs.push(job);
                taken.push((i, tuple, exchange));
            }
            _ if strict => return Ok(false),
            _ => {}
        }
        // The bodies are copied to be parsed without the GIL, a group at a time.
        if copied >= GROUP_BYTES || jobs.len() >= GROUP_RECORDS || i + 1 == count {
            let group = std::mem::take(&mut jobs);
            let decoded: Vec<Option<Decoded>> =
                py.allow_threads(|| group.into_iter().map(|job| decode(job, &options)).collect());
            for ((i, tuple, exchange), result) in taken.drain(..).zip(decoded) {
                let visited = match result {
                    Some(result) => visit(i, tuple, exchange, result)?,
                    None => !strict,
                };
                if !visited {
                    return Ok(false);
                }
            }
            copied = 0;
            alive.clear();
        }
    }
    Ok(true)
}

/// Resolve a batch of captures: for each, the resolved capture, or None where the
/// caller must resolve it in Python (not an exchange, or declined).
///
/// `layout` is (length, features, score, decision, extra, trace_id, span_id, flags);
/// `positions` maps the recorded fields that have a place in a capture to it;
/// `extra_maps` asks for every extra as a dict (an audit rule reads them), not as text.
#[pyfunction]
fn resolve<'py>(
    py: Python<'py>,
    captures: &Bound<'py, PyList>,
    exchange_type: &Bound<'py, PyAny>,
    layout: Positions,
    positions: &Bound<'py, PyDict>,
    max_bytes: usize,
    extra_maps: bool,
) -> PyResult<Bound<'py, PyList>> {
    let layout = layout_of(layout)?;
    let out = PyList::new(py, (0..captures.len()).map(|_| py.None()))?;
    // A panic is an ordinary error here: the batch is resolved in Python.
    table::unpanicked(|| {
        each_decoded(
            py,
            captures,
            exchange_type,
            &layout,
            false,
            &mut |i, tuple, exchange, decoded| {
                let assembled = assemble(
                    py, &tuple, &exchange, decoded, &layout, positions, max_bytes, extra_maps,
                );
                if let Ok(Some(resolved)) = assembled {
                    out.set_item(i, resolved)?;
                }
                Ok(true)
            },
        )
    })?;
    Ok(out)
}

/// Features as orjson writes them, for the differential tests: the text and null count
/// of one request body, or None where the Python decoder must decide.
#[pyfunction]
#[pyo3(signature = (body, features_field=None))]
fn request_features(
    py: Python<'_>,
    body: &[u8],
    features_field: Option<String>,
) -> Option<(String, usize)> {
    let options = Options {
        features_field,
        score_field: None,
        decision_field: None,
    };
    let bytes = body.to_vec();
    match py.allow_threads(move || decode_request(&bytes, &options)) {
        RequestOutcome::Features(text, nulls) => Some((text, nulls)),
        _ => None,
    }
}

/// orjson's text of a list of objects, cut into an Arrow string column's buffers: the
/// texts packed end to end, their int32 offsets, and each object's count of top-level
/// nulls (int32); None if the text is anything else. Runs without the GIL.
#[pyfunction]
fn cut_objects<'py>(
    py: Python<'py>,
    text: &Bound<'py, PyBytes>,
) -> Option<(
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
)> {
    let bytes = text.as_bytes();
    let (address, length) = (bytes.as_ptr() as usize, bytes.len());
    let cut = py.allow_threads(move || {
        // SAFETY: `text` is borrowed for the whole call, so the bytes object outlives
        // this closure, and a bytes object's buffer is immutable and never moves.
        let bytes = unsafe { std::slice::from_raw_parts(address as *const u8, length) };
        split::cut_objects(bytes)
    })?;
    let ints =
        |values: &[i32]| -> Vec<u8> { values.iter().flat_map(|v| v.to_le_bytes()).collect() };
    Some((
        PyBytes::new(py, &cut.data),
        PyBytes::new(py, &ints(&cut.offsets)),
        PyBytes::new(py, &ints(&cut.nulls)),
    ))
}

#[pymodule]
fn _rust(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Encoded>()?;
    m.add_class::<EncodedExtra>()?;
    m.add_function(wrap_pyfunction!(resolve, m)?)?;
    m.add_function(wrap_pyfunction!(request_features, m)?)?;
    m.add_function(wrap_pyfunction!(cut_objects, m)?)?;
    m.add_function(wrap_pyfunction!(untracked, m)?)?;
    m.add_function(wrap_pyfunction!(records::decode_records, m)?)?;
    m.add_function(wrap_pyfunction!(columns::resolve_columns, m)?)?;
    table::register(m)?;
    Ok(())
}
