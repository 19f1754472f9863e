//! `ipsec.conf` reader: lines, comments, quoting, sections, `include`.
//!
//! Produces a [`RawConfig`] (sections of located `key=value` entries, keys
//! checked against the known set, duplicates rejected). Typed interpretation
//! and `also=` resolution live in [`super::effective`].

use std::path::{Path, PathBuf};

use super::error::{ConfigErrorKind, Diagnostics, Location};
use super::source::{has_wildcard, SourceLoader};

/// Maximum include nesting.
pub const MAX_INCLUDE_DEPTH: usize = 10;

/// Keys accepted in `conn` sections, with the canonical key they set
/// (aliases share one canonical key).
pub const CONN_KEYS: &[(&str, &str)] = &[
    ("also", "also"),
    ("auto", "auto"),
    ("authby", "authby"),
    ("auth", "auth"),
    ("type", "type"),
    ("left", "left"),
    ("right", "right"),
    ("leftid", "leftid"),
    ("rightid", "rightid"),
    ("leftsubnet", "leftsubnet"),
    ("leftsubnets", "leftsubnet"),
    ("rightsubnet", "rightsubnet"),
    ("rightsubnets", "rightsubnet"),
    ("leftauth", "leftauth"),
    ("rightauth", "rightauth"),
    ("leftupdown", "leftupdown"),
    ("rightupdown", "rightupdown"),
    ("keyexchange", "keyexchange"),
    ("ikev2", "ikev2"),
    ("aggressive", "aggressive"),
    ("aggrmode", "aggressive"),
    ("ike", "ike"),
    ("esp", "esp"),
    ("phase2alg", "esp"),
    ("phase2", "phase2"),
    ("ikelifetime", "ikelifetime"),
    ("salifetime", "salifetime"),
    ("keylife", "salifetime"),
    ("lifetime", "salifetime"),
    ("rekeymargin", "rekeymargin"),
    ("margintime", "rekeymargin"),
    ("rekeyfuzz", "rekeyfuzz"),
    ("rekey", "rekey"),
    ("dpddelay", "dpddelay"),
    ("dpdtimeout", "dpdtimeout"),
    ("dpdaction", "dpdaction"),
    ("keyingtries", "keyingtries"),
    ("mark", "mark"),
    ("replay-window", "replay-window"),
    ("replay_window", "replay-window"),
    ("pfs", "pfs"),
    ("encapsulation", "encapsulation"),
    ("forceencaps", "encapsulation"),
    ("compress", "compress"),
    ("mtu", "mtu"),
    ("vti-interface", "vti-interface"),
    ("ipsec-interface", "ipsec-interface"),
    ("interface-ip", "interface-ip"),
];

/// Keys accepted (and kept as text) in `config setup`.
pub const SETUP_KEYS: &[&str] = &[
    "protostack",
    "uniqueids",
    "charondebug",
    "nat_traversal",
    "virtual_private",
    "plutodebug",
    "plutostderrlog",
    "logfile",
    "logtime",
    "logappend",
    "dumpdir",
    "listen",
    "interfaces",
    "strictcrlpolicy",
    "keep_alive",
    "nhelpers",
    "ikev1-policy",
    // IKE flood limits (config/flood.rs).
    "ddos-mode",
    "ddos-ike-threshold",
    "cookie_threshold_ip",
    "block_threshold",
    "max-halfopen-ike",
    "half_open_timeout",
];

/// Kind of an `ipsec.conf` section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SectionKind {
    /// `config setup`.
    Setup,
    /// `conn NAME` (including `conn %default`).
    Conn,
    /// strongSwan `ca NAME` (accepted, ignored with a warning).
    Ca,
}

/// One `key=value` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEntry {
    /// The key as written.
    pub key: String,
    /// The canonical key (aliases such as `keylife`/`lifetime` map to `salifetime`).
    pub canonical: &'static str,
    /// The unquoted value; `None` for `key=` (reset to the default).
    pub value: Option<String>,
    /// Where it was written.
    pub loc: Location,
}

/// A section with its entries in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawSection {
    /// Section kind.
    pub kind: SectionKind,
    /// Section name (`setup`, the conn name, `%default`).
    pub name: String,
    /// Location of the header line.
    pub loc: Location,
    /// Entries.
    pub entries: Vec<RawEntry>,
}

impl RawSection {
    /// The first entry with canonical key `canonical`.
    pub fn get(&self, canonical: &str) -> Option<&RawEntry> {
        self.entries.iter().find(|e| e.canonical == canonical)
    }
}

/// The sections of an `ipsec.conf` (and everything it includes), in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawConfig {
    /// Sections in the order they appear.
    pub sections: Vec<RawSection>,
}

/// Reads `path` through `loader` and parses it (following includes).
pub fn parse_conf_file(
    path: &Path,
    loader: &dyn SourceLoader,
    diag: &mut Diagnostics,
) -> RawConfig {
    let mut st = State::default();
    if let Some(text) = read_text(path, loader, &Location::whole_file(path), diag) {
        let mut stack = vec![path.to_path_buf()];
        parse_text(&text, path, loader, &mut stack, &mut st, diag);
    }
    st.cfg
}

/// Parses `text` as if it were the file `name`; `include` goes through `loader`.
pub fn parse_conf_str(
    text: &str,
    name: &Path,
    loader: &dyn SourceLoader,
    diag: &mut Diagnostics,
) -> RawConfig {
    let mut st = State::default();
    let mut stack = vec![name.to_path_buf()];
    parse_text(text, name, loader, &mut stack, &mut st, diag);
    st.cfg
}

/// Reads a file as UTF-8 text, recording an error at `at` on failure.
pub(crate) fn read_text(
    path: &Path,
    loader: &dyn SourceLoader,
    at: &Location,
    diag: &mut Diagnostics,
) -> Option<String> {
    match loader.read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(s) => Some(s),
            Err(e) => {
                let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = good.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
                diag.error(&Location::new(path, line), ConfigErrorKind::NotUtf8);
                None
            }
        },
        Err(e) => {
            let kind = if at.line == 0 {
                ConfigErrorKind::Io(e.to_string())
            } else if e.kind() == std::io::ErrorKind::NotFound {
                ConfigErrorKind::IncludeNotFound(path.display().to_string())
            } else {
                ConfigErrorKind::Io(format!("{}: {e}", path.display()))
            };
            let loc = if at.line == 0 {
                Location::whole_file(path)
            } else {
                at.clone()
            };
            diag.error(&loc, kind);
            None
        }
    }
}

/// Resolves an `include` argument against the including file and expands it.
/// Returns the files to read, or records an error.
pub(crate) fn resolve_include(
    arg: &str,
    from: &Path,
    loc: &Location,
    loader: &dyn SourceLoader,
    depth: usize,
    diag: &mut Diagnostics,
) -> Vec<PathBuf> {
    if !loader.includes_enabled() {
        diag.error(loc, ConfigErrorKind::IncludesDisabled(arg.to_string()));
        return Vec::new();
    }
    if depth > MAX_INCLUDE_DEPTH {
        diag.error(loc, ConfigErrorKind::IncludeTooDeep(MAX_INCLUDE_DEPTH));
        return Vec::new();
    }
    let p = Path::new(arg);
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        from.parent().unwrap_or(Path::new("")).join(p)
    };
    if has_wildcard(arg) {
        match loader.expand(&full) {
            Ok(v) => v,
            Err(e) => {
                diag.error(loc, ConfigErrorKind::Io(format!("{arg}: {e}")));
                Vec::new()
            }
        }
    } else {
        vec![full]
    }
}

#[derive(Default)]
struct State {
    cfg: RawConfig,
    current: Option<usize>,
}

/// A lexed, comment-free line.
enum Line<'a> {
    Blank,
    Header(&'a str, Option<&'a str>),
    Include(&'a str),
    Version,
    KeyValue(&'a str, Option<String>),
}

/// Removes a trailing comment (`#` at line start or after white space,
/// outside quotes). Fails on an unterminated quote.
pub(crate) fn strip_comment(line: &str) -> Result<&str, ConfigErrorKind> {
    let mut in_quote = false;
    let mut prev_ws = true;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_quote = !in_quote,
            '#' if !in_quote && prev_ws => return Ok(&line[..i]),
            _ => {}
        }
        prev_ws = c.is_whitespace();
    }
    if in_quote {
        Err(ConfigErrorKind::UnterminatedQuote)
    } else {
        Ok(line)
    }
}

/// Unquotes a value: `"a b"` → `a b`, `{a b}` kept with braces, bare words as is.
fn unquote(v: &str) -> Result<Option<String>, ConfigErrorKind> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if let Some(rest) = v.strip_prefix('"') {
        let end = rest.find('"').ok_or(ConfigErrorKind::UnterminatedQuote)?;
        if !rest[end + 1..].trim().is_empty() {
            return Err(ConfigErrorKind::Syntax(
                "unexpected text after the closing quote".into(),
            ));
        }
        return Ok(Some(rest[..end].to_string()));
    }
    if v.starts_with('{') {
        if !v.ends_with('}') {
            return Err(ConfigErrorKind::UnterminatedBrace);
        }
        return Ok(Some(v.to_string()));
    }
    if v.contains('"') {
        return Err(ConfigErrorKind::Syntax(
            "quote in the middle of a value".into(),
        ));
    }
    if v.contains(char::is_whitespace) {
        return Err(ConfigErrorKind::Syntax(
            "value contains white space; enclose it in double quotes".into(),
        ));
    }
    Ok(Some(v.to_string()))
}

fn lex(raw: &str) -> Result<Line<'_>, ConfigErrorKind> {
    let indented = raw.starts_with([' ', '\t']);
    let body = strip_comment(raw)?.trim();
    if body.is_empty() {
        return Ok(Line::Blank);
    }
    let (word, rest) = match body.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (body, ""),
    };
    if word == "include" && !rest.starts_with('=') {
        if rest.is_empty() || rest.contains(char::is_whitespace) {
            return Err(ConfigErrorKind::Syntax(
                "include takes exactly one file name or pattern".into(),
            ));
        }
        return Ok(Line::Include(rest));
    }
    if !indented {
        if body.contains('=') {
            return Err(ConfigErrorKind::Syntax(
                "parameter lines must be indented (start with a space or tab)".into(),
            ));
        }
        return match word {
            "version" => Ok(Line::Version),
            "config" | "conn" | "ca" => {
                if rest.is_empty() {
                    return Err(ConfigErrorKind::Syntax(format!("'{word}' needs a name")));
                }
                if rest.contains(char::is_whitespace) {
                    return Err(ConfigErrorKind::Syntax(format!(
                        "'{word}' takes exactly one name"
                    )));
                }
                Ok(Line::Header(word, Some(rest)))
            }
            _ => Err(ConfigErrorKind::UnknownSection(word.to_string())),
        };
    }
    let Some((k, v)) = body.split_once('=') else {
        return Err(ConfigErrorKind::Syntax(format!(
            "expected key=value, found '{body}'"
        )));
    };
    let k = k.trim();
    if k.is_empty()
        || !k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ConfigErrorKind::Syntax(format!("bad key '{k}'")));
    }
    Ok(Line::KeyValue(k, unquote(v)?))
}

fn parse_text(
    text: &str,
    file: &Path,
    loader: &dyn SourceLoader,
    stack: &mut Vec<PathBuf>,
    st: &mut State,
    diag: &mut Diagnostics,
) {
    for (idx, raw) in text.lines().enumerate() {
        let loc = Location::new(file, idx as u32 + 1);
        let line = match lex(raw) {
            Ok(l) => l,
            Err(kind) => {
                diag.error(&loc, kind);
                continue;
            }
        };
        match line {
            Line::Blank | Line::Version => {}
            Line::Include(arg) => {
                for path in resolve_include(arg, file, &loc, loader, stack.len(), diag) {
                    if stack.contains(&path) {
                        diag.error(
                            &loc,
                            ConfigErrorKind::IncludeCycle(path.display().to_string()),
                        );
                        continue;
                    }
                    if let Some(t) = read_text(&path, loader, &loc, diag) {
                        stack.push(path.clone());
                        parse_text(&t, &path, loader, stack, st, diag);
                        stack.pop();
                    }
                }
            }
            Line::Header(ty, name) => {
                let name = name.unwrap_or_default().to_string();
                let kind = match ty {
                    "config" => {
                        if name != "setup" {
                            diag.error(
                                &loc,
                                ConfigErrorKind::Syntax(format!(
                                    "expected 'config setup', found 'config {name}'"
                                )),
                            );
                        }
                        SectionKind::Setup
                    }
                    "ca" => {
                        diag.warn(&loc, format!("ca section '{name}' ignored (PSK only)"));
                        SectionKind::Ca
                    }
                    _ => SectionKind::Conn,
                };
                st.cfg.sections.push(RawSection {
                    kind,
                    name,
                    loc,
                    entries: Vec::new(),
                });
                st.current = Some(st.cfg.sections.len() - 1);
            }
            Line::KeyValue(key, value) => {
                let Some(cur) = st.current else {
                    diag.error(
                        &loc,
                        ConfigErrorKind::Syntax("parameter outside of any section".into()),
                    );
                    continue;
                };
                let section = &mut st.cfg.sections[cur];
                add_entry(section, key, value, loc, diag);
            }
        }
    }
}

fn add_entry(
    section: &mut RawSection,
    key: &str,
    value: Option<String>,
    loc: Location,
    diag: &mut Diagnostics,
) {
    // Libreswan reserves x-/x_ prefixed keys for user extensions.
    if key.len() > 2 && (key[..2].eq_ignore_ascii_case("x-") || key[..2].eq_ignore_ascii_case("x_"))
    {
        return;
    }
    let canonical: &'static str = match section.kind {
        SectionKind::Ca => return,
        SectionKind::Setup => match SETUP_KEYS.iter().find(|k| **k == key) {
            Some(k) => k,
            None => {
                diag.error(
                    &loc,
                    ConfigErrorKind::UnknownKey {
                        key: key.to_string(),
                        section: "config setup",
                    },
                );
                return;
            }
        },
        SectionKind::Conn => match CONN_KEYS.iter().find(|(k, _)| *k == key) {
            Some((_, c)) => c,
            None => {
                diag.error(
                    &loc,
                    ConfigErrorKind::UnknownKey {
                        key: key.to_string(),
                        section: "conn",
                    },
                );
                return;
            }
        },
    };
    if canonical != "also" {
        if let Some(first) = section.get(canonical) {
            diag.error(
                &loc,
                ConfigErrorKind::DuplicateKey {
                    key: key.to_string(),
                    first_line: first.loc.line,
                },
            );
            return;
        }
    }
    section.entries.push(RawEntry {
        key: key.to_string(),
        canonical,
        value,
        loc,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::source::NoIncludes;

    fn parse(text: &str) -> (RawConfig, Diagnostics) {
        let mut d = Diagnostics::default();
        let c = parse_conf_str(text, Path::new("t.conf"), &NoIncludes, &mut d);
        (c, d)
    }

    #[test]
    fn sections_comments_quotes() {
        let (c, d) = parse(
            "# top\nversion 2.0\nconfig setup\n\tuniqueids = no  # c\n\n\
             conn a\n  leftupdown=\"/x.sh -m 1 # not a comment\"\n  leftid=@#0a0b\n\tleftsubnets={10.0.0.0/8 10.1.0.0/16}\n  pfs=\n",
        );
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        assert_eq!(c.sections.len(), 2);
        assert_eq!(c.sections[0].entries[0].value.as_deref(), Some("no"));
        let a = &c.sections[1];
        assert_eq!(
            a.get("leftupdown").unwrap().value.as_deref(),
            Some("/x.sh -m 1 # not a comment")
        );
        assert_eq!(a.get("leftid").unwrap().value.as_deref(), Some("@#0a0b"));
        assert_eq!(a.get("leftsubnet").unwrap().key, "leftsubnets");
        assert_eq!(a.get("pfs").unwrap().value, None);
        assert_eq!(a.get("pfs").unwrap().loc.line, 10);
    }

    #[test]
    fn collects_all_errors() {
        let (_, d) = parse(
            "conn a\n  bogus=1\n  keylife=1h\n  lifetime=2h\n  x=\"open\n  left=a b\nleft=1\nfoo bar\n",
        );
        let lines: Vec<u32> = d.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 4, 5, 6, 7, 8], "{:?}", d.errors);
        assert!(matches!(
            d.errors[2].kind,
            ConfigErrorKind::UnterminatedQuote
        ));
    }

    #[test]
    fn includes_disabled_in_memory() {
        let (_, d) = parse("include /etc/passwd\n");
        assert!(matches!(
            d.errors[0].kind,
            ConfigErrorKind::IncludesDisabled(_)
        ));
    }
}
