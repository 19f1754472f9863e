//! A minimal one-line JSON object writer (std only).

use std::fmt::Write;

/// Builds `{"key":value,...}`.
pub struct Json {
    out: String,
}

impl Json {
    /// An empty object.
    pub fn new() -> Json {
        Json {
            out: String::from("{"),
        }
    }

    fn key(&mut self, k: &str) -> &mut String {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        push_str(&mut self.out, k);
        self.out.push(':');
        &mut self.out
    }

    /// A string member.
    pub fn str(&mut self, k: &str, v: &str) -> &mut Json {
        push_str(self.key(k), v);
        self
    }

    /// A string member, `null` if absent.
    pub fn opt_str(&mut self, k: &str, v: Option<&str>) -> &mut Json {
        match v {
            Some(v) => self.str(k, v),
            None => self.null(k),
        }
    }

    /// An integer member.
    pub fn u64(&mut self, k: &str, v: u64) -> &mut Json {
        let _ = write!(self.key(k), "{v}");
        self
    }

    /// An integer member, `null` if absent.
    pub fn opt_u64(&mut self, k: &str, v: Option<u64>) -> &mut Json {
        match v {
            Some(v) => self.u64(k, v),
            None => self.null(k),
        }
    }

    /// A number member (6 decimals; `null` if not finite).
    pub fn f64(&mut self, k: &str, v: f64) -> &mut Json {
        if v.is_finite() {
            let _ = write!(self.key(k), "{v:.6}");
            self
        } else {
            self.null(k)
        }
    }

    /// A number member, `null` if absent.
    pub fn opt_f64(&mut self, k: &str, v: Option<f64>) -> &mut Json {
        match v {
            Some(v) => self.f64(k, v),
            None => self.null(k),
        }
    }

    /// A boolean member.
    pub fn bool(&mut self, k: &str, v: bool) -> &mut Json {
        self.key(k).push_str(if v { "true" } else { "false" });
        self
    }

    fn null(&mut self, k: &str) -> &mut Json {
        self.key(k).push_str("null");
        self
    }

    /// The finished object.
    pub fn finish(&mut self) -> String {
        let mut s = std::mem::take(&mut self.out);
        s.push('}');
        s
    }
}

fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
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
    fn writes_members_and_escapes() {
        let s = Json::new()
            .str("a", "x\"y\\z\n\u{1}")
            .u64("n", 42)
            .f64("f", 1.5)
            .f64("inf", f64::INFINITY)
            .opt_u64("none", None)
            .bool("b", true)
            .finish();
        assert_eq!(
            s,
            r#"{"a":"x\"y\\z\n\u0001","n":42,"f":1.500000,"inf":null,"none":null,"b":true}"#
        );
        assert_eq!(Json::new().finish(), "{}");
    }
}
