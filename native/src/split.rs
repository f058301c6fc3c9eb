//! orjson's text of a list of objects, cut into one text per object.
//!
//! `log()` captures carry features as Python dicts. Writing a whole batch of them with
//! one `orjson.dumps(list)` and cutting the array here costs a fraction of one call per
//! record. The text is orjson's own, so nothing needs to be proved equal; what is
//! counted here is what the per-record path counts: the nulls among each object's own
//! values (not nested ones).

/// Each element's text packed end to end, the Arrow offsets (int32) into it, and each
/// element's count of top-level nulls; None if the text is not an array of objects or
/// the texts pass 2 GiB (an Arrow string column's offsets).
pub struct Cut {
    pub data: Vec<u8>,
    pub offsets: Vec<i32>,
    pub nulls: Vec<i32>,
}

pub fn cut_objects(text: &[u8]) -> Option<Cut> {
    let inner = text.strip_prefix(b"[")?.strip_suffix(b"]")?;
    let mut cut = Cut {
        data: Vec::with_capacity(inner.len()),
        offsets: vec![0],
        nulls: Vec::new(),
    };
    let mut depth = 0usize;
    let mut start = 0usize;
    let mut nulls = 0i32;
    let mut i = 0usize;
    while i < inner.len() {
        let byte = inner[i];
        match byte {
            b'"' => {
                // Skip the string: to the next quote not escaped.
                let mut j = i + 1;
                loop {
                    j += memchr::memchr2(b'"', b'\\', &inner[j..])?;
                    if inner[j] == b'\\' {
                        j += 2;
                        continue;
                    }
                    break;
                }
                i = j;
            }
            b'{' | b'[' => {
                if depth == 0 {
                    if byte != b'{' {
                        return None;
                    }
                    start = i;
                    nulls = 0;
                }
                depth += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    cut.data.extend_from_slice(&inner[start..=i]);
                    cut.offsets.push(i32::try_from(cut.data.len()).ok()?);
                    cut.nulls.push(nulls);
                }
            }
            // Outside strings only `null` starts with `n`; at depth 1 it is a value.
            b'n' if depth == 1 => nulls += 1,
            b',' if depth == 0 => {}
            _ if depth == 0 => return None,
            _ => {}
        }
        i += 1;
    }
    if depth != 0 {
        return None;
    }
    Some(cut)
}
