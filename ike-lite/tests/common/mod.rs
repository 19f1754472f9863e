//! Parser for the `key = value` vector files under `tests/vectors/`.
//!
//! A file is a list of records separated by blank lines; `#` starts a comment
//! line. Values are hex (spaces allowed) unless read with [`Record::text`].
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

/// One record of a vector file.
#[derive(Debug, Default)]
pub struct Record {
    fields: HashMap<String, String>,
    /// Line number of the record's first line, for messages.
    pub line: usize,
}

impl Record {
    /// Whether the record has `key`.
    pub fn has(&self, key: &str) -> bool {
        self.fields.contains_key(key)
    }

    /// The raw text of `key`.
    pub fn text(&self, key: &str) -> &str {
        self.fields
            .get(key)
            .unwrap_or_else(|| panic!("record at line {} lacks {key}", self.line))
    }

    /// `key` decoded from hex (whitespace ignored).
    pub fn hex(&self, key: &str) -> Vec<u8> {
        let s: String = self.text(key).split_whitespace().collect();
        hex::decode(&s).unwrap_or_else(|e| panic!("line {}: {key}: {e}", self.line))
    }

    /// `key` as a decimal number.
    pub fn num(&self, key: &str) -> usize {
        self.text(key)
            .parse()
            .unwrap_or_else(|e| panic!("line {}: {key}: {e}", self.line))
    }
}

/// Reads `tests/vectors/<name>`.
pub fn load(name: &str) -> Vec<Record> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut out = Vec::new();
    let mut cur = Record::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            if !cur.fields.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{}:{}: no '='", name, n + 1));
        if cur.fields.is_empty() {
            cur.line = n + 1;
        }
        cur.fields
            .insert(k.trim().to_string(), v.trim().to_string());
    }
    if !cur.fields.is_empty() {
        out.push(cur);
    }
    assert!(!out.is_empty(), "{name} has no records");
    out
}
