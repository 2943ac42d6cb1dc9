//! Hand-written JSON for everything the worker writes and reads itself: responses, log
//! lines, the messages between an isolate and its Durable Objects, what those objects
//! store, and the configuration. (Request bodies: `core/body.rs`, on the same parser.)
//!
//! Every text is parsed into a `serde_json::Value` (one parser, linked anyway: jwt-compact
//! needs it) and read from there by hand, and written with [`Obj`]. serde's derives would
//! instead generate a deserializer and a serializer per type: on 2026-12-07 those were most
//! of serde_json's 85 KB of wasm code (issue 16, BENCHMARKS.md). The formats are the ones
//! the derives wrote, so stored state and messages from a previous version still read.

use serde_json::Value;

/// `text` as a JSON value, or `None` when it is not JSON.
pub fn parse(text: &[u8]) -> Option<Value> {
    serde_json::from_slice(text).ok()
}

/// As [`parse`], but a text that repeats a key in any object is refused too: serde_json
/// keeps the last of two, and a text that says two things must not be read as either.
pub fn parse_strict(text: &[u8]) -> Option<Value> {
    let parsed = parse(text)?;
    let text = std::str::from_utf8(text).ok()?;
    (!repeats_a_key(text, &parsed)).then_some(parsed)
}

/// Whether `text`, which parsed as `parsed`, wrote some key twice in one object: the keys
/// as written are counted against the keys the parser kept.
pub fn repeats_a_key(text: &str, parsed: &Value) -> bool {
    count_keys(text) != count_parsed_keys(parsed)
}

fn count_parsed_keys(v: &Value) -> usize {
    match v {
        Value::Array(items) => items.iter().map(count_parsed_keys).sum(),
        Value::Object(map) => map.len() + map.values().map(count_parsed_keys).sum::<usize>(),
        _ => 0,
    }
}

/// Keys as written: a string followed (after white space) by `:` outside another string.
fn count_keys(text: &str) -> usize {
    let bytes = text.as_bytes();
    let (mut i, mut count) = (0, 0);
    while i < bytes.len() {
        if bytes[i] == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            let mut j = i;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b':' {
                count += 1;
            }
        } else {
            i += 1;
        }
    }
    count
}

/// A member that must be an integer.
pub fn int(v: &Value, name: &str) -> Option<i64> {
    v.get(name)?.as_i64()
}

/// A member that must be an integer from 0 to `u32::MAX`.
pub fn uint(v: &Value, name: &str) -> Option<u32> {
    u32::try_from(v.get(name)?.as_u64()?).ok()
}

/// A member that must be a string.
pub fn string(v: &Value, name: &str) -> Option<String> {
    Some(v.get(name)?.as_str()?.to_string())
}

/// A member that is `false` when absent, and must otherwise be a boolean.
pub fn flag(v: &Value, name: &str) -> Option<bool> {
    match v.get(name) {
        None => Some(false),
        Some(b) => b.as_bool(),
    }
}

/// A member that is `None` when absent or null, and must otherwise be a string.
pub fn nullable_string(v: &Value, name: &str) -> Option<Option<String>> {
    match v.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(s) => Some(Some(s.as_str()?.to_string())),
    }
}

/// A member that is empty when absent, and must otherwise be an array of `[a, b]` pairs.
pub fn pairs<A, B>(
    v: &Value,
    name: &str,
    a: impl Fn(&Value) -> Option<A>,
    b: impl Fn(&Value) -> Option<B>,
) -> Option<Vec<(A, B)>> {
    let Some(items) = v.get(name) else {
        return Some(Vec::new());
    };
    items
        .as_array()?
        .iter()
        .map(|pair| match pair.as_array()?.as_slice() {
            [x, y] => Some((a(x)?, b(y)?)),
            _ => None,
        })
        .collect()
}

/// An unsigned 32-bit integer value.
pub fn as_u32(v: &Value) -> Option<u32> {
    u32::try_from(v.as_u64()?).ok()
}

/// `s` as a JSON string, quotes included. Runs that need no escape are copied whole: this
/// writes every response body and log line, and a push per character was 2% of a GET's CPU.
pub fn quote(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        // Every byte of a multi-byte character is >= 0x80, so none is escaped here.
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.push_str(&s[start..i]);
        start = i + 1;
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            b => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[(b as usize) >> 4] as char);
                out.push(HEX[(b as usize) & 15] as char);
            }
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// A value the worker writes as JSON.
pub trait ToJson {
    fn to_json(&self) -> String;
}

/// A JSON object written member by member, in order.
pub struct Obj(String);

impl Obj {
    pub fn new() -> Obj {
        Obj(String::from("{"))
    }

    fn key(mut self, name: &str) -> Obj {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        quote(&mut self.0, name);
        self.0.push(':');
        self
    }

    pub fn int(self, name: &str, value: i64) -> Obj {
        let mut o = self.key(name);
        o.0.push_str(&value.to_string());
        o
    }

    pub fn str(self, name: &str, value: &str) -> Obj {
        let mut o = self.key(name);
        quote(&mut o.0, value);
        o
    }

    pub fn bool(self, name: &str, value: bool) -> Obj {
        let mut o = self.key(name);
        o.0.push_str(if value { "true" } else { "false" });
        o
    }

    /// `null` for `None`.
    pub fn opt_str(self, name: &str, value: Option<&str>) -> Obj {
        match value {
            Some(v) => self.str(name, v),
            None => self.raw(name, "null"),
        }
    }

    /// `null` for `None`.
    pub fn opt_int(self, name: &str, value: Option<i64>) -> Obj {
        match value {
            Some(v) => self.int(name, v),
            None => self.raw(name, "null"),
        }
    }

    pub fn list<T: ToJson>(self, name: &str, items: &[T]) -> Obj {
        self.raw(name, &array(items, |o, item| o.push_str(&item.to_json())))
    }

    /// A member whose value is already JSON text.
    pub fn raw(self, name: &str, json: &str) -> Obj {
        let mut o = self.key(name);
        o.0.push_str(json);
        o
    }

    pub fn done(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

impl Default for Obj {
    fn default() -> Self {
        Obj::new()
    }
}

/// A JSON array of the items, each written by `item`.
pub fn array<T>(items: impl IntoIterator<Item = T>, item: impl Fn(&mut String, T)) -> String {
    let mut out = String::from("[");
    for (i, x) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        item(&mut out, x);
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_text_is_json_that_reads_back() {
        let tricky = "a\"b\\c\nd\u{1}e\u{7f}é\u{2028}";
        let text = Obj::new()
            .int("n", -5)
            .str("s", tricky)
            .bool("b", true)
            .raw(
                "a",
                &array([(1i64, 2u32)], |o, (a, b)| {
                    o.push_str(&format!("[{a},{b}]"))
                }),
            )
            .done();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["s"], tricky);
        assert_eq!(int(&v, "n"), Some(-5));
        assert_eq!(flag(&v, "b"), Some(true));
        assert_eq!(flag(&v, "absent"), Some(false));
        assert_eq!(flag(&v, "n"), None);
        assert_eq!(pairs(&v, "a", Value::as_i64, as_u32), Some(vec![(1, 2)]));
        assert_eq!(pairs(&v, "none", Value::as_i64, as_u32), Some(vec![]));
        assert_eq!(pairs(&v, "n", Value::as_i64, as_u32), None);
        // Every control character is escaped, as serde_json escapes them.
        for c in (0u8..0x20).map(char::from) {
            let mut ours = String::new();
            quote(&mut ours, &c.to_string());
            assert_eq!(ours, serde_json::to_string(&c.to_string()).unwrap());
        }
        // Runs between escapes are copied whole, multi-byte characters included.
        for s in [
            "",
            "plain",
            "é\"ü\\\n€",
            "\u{1f600}a\u{1}",
            "end\"",
            "\"start",
            "\u{7f}",
        ] {
            let mut ours = String::new();
            quote(&mut ours, s);
            assert_eq!(ours, serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn key_counting_ignores_colons_inside_strings() {
        assert_eq!(count_keys(r#"{"a": "b:c", "d\"": {"e": 1}}"#), 3);
        assert!(parse_strict(br#"{"a": {"b": 1, "b": 2}}"#).is_none());
        assert!(parse_strict(br#"{"a": {"b": 1}, "b": 2}"#).is_some());
        assert!(parse_strict(b"\xff").is_none());
    }

    #[test]
    fn numbers_out_of_range_are_refused() {
        let v: Value = serde_json::from_str(r#"{"big": 4294967296, "neg": -1, "f": 1.5}"#).unwrap();
        assert_eq!(uint(&v, "big"), None);
        assert_eq!(uint(&v, "neg"), None);
        assert_eq!(int(&v, "f"), None);
        assert_eq!(nullable_string(&v, "absent"), Some(None));
        assert_eq!(nullable_string(&v, "f"), None);
    }
}
