//! JSON text exactly as orjson writes it, for the values a flattened feature map holds.
//!
//! Strings: `"` and `\` escaped, `\b \t \n \f \r` in short form, other control characters
//! as lowercase `\u00XX`, everything else (DEL, U+2028, `/`) as is. Floats: the shortest
//! digits that read back to the same double, in positional notation when the decimal
//! exponent is from -5 to 15 (with `.0` on whole numbers) and as `1.5e-7` / `1e+16`
//! outside it.

use crate::json::Json;

pub fn write_string(out: &mut String, text: &str) {
    out.push('"');
    let mut start = 0;
    for (i, byte) in text.bytes().enumerate() {
        let escape: Option<&str> = match byte {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.push_str(&text[start..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[(byte >> 4) as usize] as char);
                out.push(HEX[(byte & 0xf) as usize] as char);
            }
        }
        start = i + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

pub fn write_float(out: &mut String, value: f64) {
    // ryu writes the same shortest digits, in positional notation over the same range
    // of exponents; outside it, orjson signs a positive exponent (`1e+16`, not `1e16`).
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(value);
    match text.find('e') {
        Some(at) if !text[at + 1..].starts_with('-') => {
            out.push_str(&text[..=at]);
            out.push('+');
            out.push_str(&text[at + 1..]);
        }
        _ => out.push_str(text),
    }
}

/// A scalar; false for arrays and objects, which a flattened map never holds, and for
/// a negative zero: the parser reads `-0` as -0.0 where orjson reads the integer 0, and
/// the text cannot tell which it was, so Python decides.
pub fn write_scalar(out: &mut String, value: &Json<'_>) -> bool {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(true) => out.push_str("true"),
        Json::Bool(false) => out.push_str("false"),
        Json::Int(i) => out.push_str(itoa::Buffer::new().format(*i)),
        Json::UInt(u) => out.push_str(itoa::Buffer::new().format(*u)),
        Json::Float(f) if *f == 0.0 && f.is_sign_negative() => return false,
        Json::Float(f) if f.is_finite() => write_float(out, *f),
        Json::Float(_) => return false,
        Json::Str(s) => write_string(out, s),
        Json::Array(_) | Json::Object(_) => return false,
    }
    true
}

/// A flat map as one JSON object and its count of nulls; None if a value cannot be written.
pub fn write_flat<'v, 'a: 'v>(
    pairs: impl ExactSizeIterator<Item = (&'v str, &'v Json<'a>)>,
) -> Option<(String, usize)> {
    let mut out = String::with_capacity(64 + pairs.len() * 24);
    let mut nulls = 0;
    out.push('{');
    for (i, (key, value)) in pairs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(&mut out, key);
        out.push(':');
        if let Json::Null = value {
            nulls += 1;
        }
        if !write_scalar(&mut out, value) {
            return None;
        }
    }
    out.push('}');
    Some((out, nulls))
}
