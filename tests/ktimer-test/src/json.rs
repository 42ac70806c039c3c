//! A minimal JSON writer for `--json` (the report is small and flat; a dependency would buy
//! nothing).

use std::fmt::Write as _;

/// Builds one JSON document into a string.
#[derive(Debug, Default)]
pub struct JsonWriter {
    out: String,
    /// Per open container: whether the next item needs a leading comma.
    needs_comma: Vec<bool>,
    /// A key was just written: the next value belongs to it.
    after_key: bool,
}

impl JsonWriter {
    /// An empty writer.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The JSON text written so far.
    #[must_use]
    pub fn finish(self) -> String {
        self.out
    }

    /// Writes the comma that separates this item from the previous one, if any.
    fn before_item(&mut self) {
        if self.after_key {
            self.after_key = false;
            return;
        }
        if let Some(needs) = self.needs_comma.last_mut() {
            if *needs {
                self.out.push(',');
            }
            *needs = true;
        }
    }

    /// Starts an object.
    pub fn begin_object(&mut self) -> &mut Self {
        self.before_item();
        self.out.push('{');
        self.needs_comma.push(false);
        self
    }

    /// Ends the innermost object.
    pub fn end_object(&mut self) -> &mut Self {
        self.needs_comma.pop();
        self.out.push('}');
        self
    }

    /// Starts an array.
    pub fn begin_array(&mut self) -> &mut Self {
        self.before_item();
        self.out.push('[');
        self.needs_comma.push(false);
        self
    }

    /// Ends the innermost array.
    pub fn end_array(&mut self) -> &mut Self {
        self.needs_comma.pop();
        self.out.push(']');
        self
    }

    /// Writes an object key; the next call writes its value.
    pub fn key(&mut self, key: &str) -> &mut Self {
        self.before_item();
        push_string(&mut self.out, key);
        self.out.push(':');
        self.after_key = true;
        self
    }

    /// Writes a string value.
    pub fn string(&mut self, value: &str) -> &mut Self {
        self.before_item();
        push_string(&mut self.out, value);
        self
    }

    /// Writes an integer value.
    pub fn int(&mut self, value: impl Into<i128>) -> &mut Self {
        self.before_item();
        let _ = write!(self.out, "{}", value.into());
        self
    }

    /// Writes a number with three decimals (finite; non-finite values become `null`).
    pub fn float(&mut self, value: f64) -> &mut Self {
        self.before_item();
        if value.is_finite() {
            let _ = write!(self.out, "{value:.3}");
        } else {
            self.out.push_str("null");
        }
        self
    }

    /// Writes a boolean value.
    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.before_item();
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    /// Writes `null`.
    pub fn null(&mut self) -> &mut Self {
        self.before_item();
        self.out.push_str("null");
        self
    }
}

/// Appends `text` as a JSON string literal.
fn push_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_nested_containers_with_commas() {
        let mut json = JsonWriter::new();
        json.begin_object();
        json.key("name").string("a\"b\n");
        json.key("list").begin_array();
        json.int(1).int(-2).bool(true).null();
        json.begin_object().key("x").float(1.5).end_object();
        json.end_array();
        json.key("empty").begin_object().end_object();
        json.end_object();
        assert_eq!(
            json.finish(),
            r#"{"name":"a\"b\n","list":[1,-2,true,null,{"x":1.500}],"empty":{}}"#
        );
    }

    #[test]
    fn escapes_control_characters() {
        let mut json = JsonWriter::new();
        json.string("\u{1}");
        assert_eq!(json.finish(), r#""\u0001""#);
    }
}
