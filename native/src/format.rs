//! JSON text exactly as orjson writes it, for the values a flattened feature map holds.
//!
//! Strings: `"` and `\` escaped, `\b \t \n \f \r` in short form, other control characters
//! as lowercase `\u00XX`, everything else (DEL, U+2028, `/`) as is. Floats: the shortest
//! digits that read back to the same double, in positional notation when the decimal
//! exponent is from -5 to 15 (with `.0` on whole numbers) and as `1.5e-7` / `1e+16`
//! outside it.

use serde_json::{Map, Value};

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
    if value == 0.0 {
        out.push_str(if value.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    let mut buffer = ryu::Buffer::new();
    let shortest = buffer.format_finite(value);
    let (negative, text) = match shortest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, shortest),
    };
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    // The value is 0.DIGITS x 10^point.
    let point_at = mantissa.find('.').unwrap_or(mantissa.len()) as i32;
    let all: Vec<u8> = mantissa.bytes().filter(|b| *b != b'.').collect();
    let leading = all.iter().take_while(|b| **b == b'0').count();
    let mut digits: Vec<u8> = all[leading..].to_vec();
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    let point = point_at - leading as i32 + exponent;
    let scientific = point - 1;
    if negative {
        out.push('-');
    }
    let n = digits.len() as i32;
    let digits_str = std::str::from_utf8(&digits).unwrap_or("0");
    if (-5..=15).contains(&scientific) {
        if point <= 0 {
            out.push_str("0.");
            for _ in 0..(-point) {
                out.push('0');
            }
            out.push_str(digits_str);
        } else if point >= n {
            out.push_str(digits_str);
            for _ in 0..(point - n) {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits_str[..point as usize]);
            out.push('.');
            out.push_str(&digits_str[point as usize..]);
        }
    } else {
        out.push_str(&digits_str[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits_str[1..]);
        }
        out.push('e');
        out.push(if scientific > 0 { '+' } else { '-' });
        out.push_str(&scientific.abs().to_string());
    }
}

/// A scalar; false for arrays and objects, which a flattened map never holds.
pub fn write_scalar(out: &mut String, value: &Value) -> bool {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                match n.as_f64() {
                    // The parser reads `-0` as -0.0, orjson as the integer 0: the text
                    // cannot tell which it was, so Python decides.
                    Some(f) if f == 0.0 && f.is_sign_negative() => return false,
                    Some(f) if f.is_finite() => write_float(out, f),
                    _ => return false,
                }
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(_) | Value::Object(_) => return false,
    }
    true
}

/// A flat map as one JSON object and its count of nulls; None if a value is not a scalar.
pub fn write_flat(map: &Map<String, Value>) -> Option<(String, usize)> {
    let mut out = String::with_capacity(64 + map.len() * 24);
    let mut nulls = 0;
    out.push('{');
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(&mut out, key);
        out.push(':');
        if value.is_null() {
            nulls += 1;
        }
        if !write_scalar(&mut out, value) {
            return None;
        }
    }
    out.push('}');
    Some((out, nulls))
}
