//! `ipsec.secrets` reader and the pre-shared key type.
//!
//! Entries are `ID ID ... : PSK "secret"` (IDs optional: `: PSK "x"` matches
//! any pair), plus `include PATTERN`. Secrets may be `"quoted"`, `'quoted'`,
//! bare words, `0x` hex or `0s` base64. Other secret types (RSA, ECDSA, ...)
//! are skipped with a warning. Lookup follows Libreswan's precedence: an
//! entry naming both IDs beats one naming one ID plus `%any`, which beats an
//! entry that matches any pair.

use std::fmt;
use std::path::{Path, PathBuf};

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::conf::{read_text, resolve_include, strip_comment};
use super::error::{ConfigErrorKind, Diagnostics, Location};
use super::source::SourceLoader;
use super::values::{decode_hex, Identity};

/// A pre-shared key: zeroized on drop, redacted in `Debug`, compared in
/// constant time.
#[derive(Clone)]
pub struct Psk(Zeroizing<Vec<u8>>);

impl Psk {
    /// Wraps key bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The key bytes (for the key derivation only; never print them).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty key (never produced by the parser).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq for Psk {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_slice().ct_eq(other.0.as_slice()).into()
    }
}

impl Eq for Psk {}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One PSK entry of the secrets file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretEntry {
    /// The IDs the secret applies to (any pair among them); empty = any pair.
    pub ids: Vec<Identity>,
    /// The key.
    pub psk: Psk,
    /// Where the entry is.
    pub loc: Location,
}

/// All PSK entries, in file order (includes expanded in place).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Secrets {
    /// Entries in file order.
    pub entries: Vec<SecretEntry>,
    /// True when some entry failed to parse, so a missing match may be a
    /// consequence of that error rather than a separate problem.
    pub incomplete: bool,
}

/// How well a secrets entry matched a lookup (higher is better).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MatchQuality {
    /// The entry has no IDs (or only `%any`): it matches any pair.
    AnyPair,
    /// One ID matched exactly, the other side by `%any` (or single-ID entry).
    OneSide,
    /// Both the local and the remote ID are listed.
    BothSides,
}

/// Result of [`Secrets::lookup`].
#[derive(Clone, Copy, Debug)]
pub struct PskMatch<'a> {
    /// The chosen entry (the first of the best).
    pub entry: &'a SecretEntry,
    /// How it matched.
    pub quality: MatchQuality,
    /// Another entry of the same quality with a different key, if any.
    pub ambiguous_with: Option<&'a SecretEntry>,
}

impl Secrets {
    /// Finds the PSK for a local/remote identity pair. `local` is `None` when
    /// the local identity is not known yet (`left=%defaultroute` without
    /// `leftid=`); then only entries that accept any local ID can match.
    pub fn lookup(&self, local: Option<&Identity>, remote: &Identity) -> Option<PskMatch<'_>> {
        let mut best: Option<PskMatch<'_>> = None;
        for e in &self.entries {
            let Some(q) = quality(e, local, remote) else {
                continue;
            };
            match &mut best {
                Some(b) if b.quality > q => {}
                Some(b) if b.quality == q => {
                    if b.ambiguous_with.is_none() && b.entry.psk != e.psk {
                        b.ambiguous_with = Some(e);
                    }
                }
                _ => {
                    best = Some(PskMatch {
                        entry: e,
                        quality: q,
                        ambiguous_with: None,
                    })
                }
            }
        }
        best
    }
}

fn quality(e: &SecretEntry, local: Option<&Identity>, remote: &Identity) -> Option<MatchQuality> {
    let specific: Vec<&Identity> = e.ids.iter().filter(|i| **i != Identity::Any).collect();
    if specific.is_empty() {
        return Some(MatchQuality::AnyPair);
    }
    let has_local = local.is_some_and(|l| *l != Identity::Any && specific.contains(&l));
    let has_remote = *remote != Identity::Any && specific.contains(&remote);
    let wildcard_other = e.ids.len() == 1 || e.ids.contains(&Identity::Any);
    if has_local && has_remote {
        Some(MatchQuality::BothSides)
    } else if (has_local || has_remote) && wildcard_other {
        Some(MatchQuality::OneSide)
    } else {
        None
    }
}

/// Reads and parses a secrets file (following includes). Warns when the file
/// is readable by group or others.
pub fn parse_secrets_file(
    path: &Path,
    loader: &dyn SourceLoader,
    diag: &mut Diagnostics,
) -> Secrets {
    let mut out = Secrets::default();
    let before = diag.errors.len();
    let mut stack = vec![path.to_path_buf()];
    load_one(
        path,
        &Location::whole_file(path),
        loader,
        &mut stack,
        &mut out,
        diag,
    );
    out.incomplete = diag.errors.len() != before;
    out
}

/// Parses secrets text as if it were the file `name`.
pub fn parse_secrets_str(
    text: &str,
    name: &Path,
    loader: &dyn SourceLoader,
    diag: &mut Diagnostics,
) -> Secrets {
    let mut out = Secrets::default();
    let before = diag.errors.len();
    let mut stack = vec![name.to_path_buf()];
    parse_text(text, name, loader, &mut stack, &mut out, diag);
    out.incomplete = diag.errors.len() != before;
    out
}

fn load_one(
    path: &Path,
    at: &Location,
    loader: &dyn SourceLoader,
    stack: &mut Vec<PathBuf>,
    out: &mut Secrets,
    diag: &mut Diagnostics,
) {
    let Some(text) = read_text(path, loader, at, diag) else {
        return;
    };
    if let Some(mode) = loader.mode(path) {
        if mode & 0o077 != 0 {
            diag.warn(
                &Location::whole_file(path),
                format!(
                    "secrets file is accessible by group/others (mode {:04o}); run: chmod 600 {}",
                    mode & 0o7777,
                    path.display()
                ),
            );
        }
    }
    parse_text(&text, path, loader, stack, out, diag);
}

/// Splits a line into white-space separated tokens; quoted tokens keep their
/// quotes so the caller can tell `"x"` from `x`.
fn tokens(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if b[i] == b'"' || b[i] == b'\'' {
            let q = b[i];
            i += 1;
            while i < b.len() && b[i] != q {
                i += 1;
            }
            i = (i + 1).min(b.len());
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
        }
        out.push(&s[start..i]);
    }
    out
}

fn parse_text(
    text: &str,
    file: &Path,
    loader: &dyn SourceLoader,
    stack: &mut Vec<PathBuf>,
    out: &mut Secrets,
    diag: &mut Diagnostics,
) {
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let loc = Location::new(file, i as u32 + 1);
        let body = match strip_comment(lines[i]) {
            Ok(b) => b.trim().to_string(),
            Err(k) => {
                diag.error(&loc, k);
                i += 1;
                continue;
            }
        };
        i += 1;
        if body.is_empty() {
            continue;
        }
        let mut logical = body;
        // An entry whose IDs end before the ':' may continue on following
        // lines that start with white space.
        while find_separator(&tokens(&logical)).is_none()
            && i < lines.len()
            && lines[i].starts_with([' ', '\t'])
        {
            match strip_comment(lines[i]) {
                Ok(b) if !b.trim().is_empty() => {
                    logical.push(' ');
                    logical.push_str(b.trim());
                    i += 1;
                }
                _ => break,
            }
        }
        let toks = tokens(&logical);
        if toks[0] == "include" {
            if toks.len() != 2 {
                diag.error(
                    &loc,
                    ConfigErrorKind::SecretSyntax("include takes exactly one pattern".into()),
                );
                continue;
            }
            for path in resolve_include(toks[1], file, &loc, loader, stack.len(), diag) {
                if stack.contains(&path) {
                    diag.error(
                        &loc,
                        ConfigErrorKind::IncludeCycle(path.display().to_string()),
                    );
                    continue;
                }
                stack.push(path.clone());
                load_one(&path, &loc, loader, stack, out, diag);
                stack.pop();
            }
            continue;
        }
        match parse_entry(&toks, &loc) {
            Ok(Some(e)) => out.entries.push(e),
            Ok(None) => {
                let ty = toks
                    .get(find_separator(&toks).map_or(0, |s| s.after))
                    .copied()
                    .unwrap_or("?");
                diag.warn(&loc, format!("{ty} secret ignored: only PSK is supported"));
                // RSA/ECDSA keys may be a `{ ... }` block over several lines.
                if logical.contains('{') && !logical.contains('}') {
                    while i < lines.len() && !lines[i].contains('}') {
                        i += 1;
                    }
                    i += 1;
                }
            }
            Err(k) => diag.error(&loc, k),
        }
    }
}

struct Sep {
    /// Number of ID tokens before the separator.
    ids: usize,
    /// Index of the first token after the separator.
    after: usize,
    /// The ID token had the ':' glued to it (`198.51.100.1:`).
    glued: bool,
}

fn find_separator(toks: &[&str]) -> Option<Sep> {
    for (i, t) in toks.iter().enumerate() {
        if t.starts_with(['"', '\'']) {
            continue;
        }
        if *t == ":" {
            return Some(Sep {
                ids: i,
                after: i + 1,
                glued: false,
            });
        }
        if let Some(id) = t.strip_suffix(':') {
            // `2001:db8::` is an IPv6 address, not `2001:db8:` + ':'.
            if t.parse::<std::net::IpAddr>().is_err() && !id.is_empty() {
                return Some(Sep {
                    ids: i + 1,
                    after: i + 1,
                    glued: true,
                });
            }
        }
    }
    None
}

fn parse_entry(toks: &[&str], loc: &Location) -> Result<Option<SecretEntry>, ConfigErrorKind> {
    let sep = find_separator(toks).ok_or(ConfigErrorKind::SecretWithoutPsk)?;
    let mut ids = Vec::new();
    for (n, t) in toks[..sep.ids].iter().enumerate() {
        let t = if sep.glued && n + 1 == sep.ids {
            t.strip_suffix(':').unwrap_or(t)
        } else {
            t
        };
        let t = t.trim_matches('"');
        let id = Identity::parse(t)
            .map_err(|e| ConfigErrorKind::SecretSyntax(format!("bad ID '{t}': {e}")))?;
        ids.push(id);
    }
    let rest = &toks[sep.after..];
    let Some(ty) = rest.first() else {
        return Err(ConfigErrorKind::SecretWithoutPsk);
    };
    match ty.to_ascii_uppercase().as_str() {
        "PSK" => {}
        "RSA" | "ECDSA" | "XAUTH" | "EAP" | "PIN" | "NTLM" | "P12" | "PPK" | "BLISS" | "PKCS8" => {
            return Ok(None)
        }
        _ => {
            return Err(ConfigErrorKind::SecretSyntax(format!(
                "unknown secret type '{ty}' (expected PSK)"
            )))
        }
    }
    let value = match rest {
        [_] => return Err(ConfigErrorKind::SecretSyntax("PSK without a value".into())),
        [_, v] => *v,
        _ => {
            return Err(ConfigErrorKind::SecretSyntax(
                "unexpected text after the PSK value (quote secrets containing spaces)".into(),
            ))
        }
    };
    let bytes = decode_secret(value)?;
    if bytes.is_empty() {
        return Err(ConfigErrorKind::SecretSyntax("empty PSK".into()));
    }
    Ok(Some(SecretEntry {
        ids,
        psk: Psk::new(bytes),
        loc: loc.clone(),
    }))
}

fn decode_secret(v: &str) -> Result<Vec<u8>, ConfigErrorKind> {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q) {
            return inner
                .strip_suffix(q)
                .map(|s| s.as_bytes().to_vec())
                .ok_or(ConfigErrorKind::UnterminatedQuote);
        }
    }
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        let h: String = h.chars().filter(|&c| c != '_').collect();
        return decode_hex(&h)
            .ok_or_else(|| ConfigErrorKind::SecretSyntax("bad hex after 0x".into()));
    }
    if let Some(b) = v.strip_prefix("0s") {
        return decode_base64(b)
            .ok_or_else(|| ConfigErrorKind::SecretSyntax("bad base64 after 0s".into()));
    }
    Ok(v.as_bytes().to_vec())
}

/// Standard base64 (RFC 4648, padding optional).
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::source::NoIncludes;

    fn parse(text: &str) -> (Secrets, Diagnostics) {
        let mut d = Diagnostics::default();
        let s = parse_secrets_str(text, Path::new("s"), &NoIncludes, &mut d);
        (s, d)
    }

    fn id(s: &str) -> Identity {
        Identity::parse(s).unwrap()
    }

    #[test]
    fn forms_of_secrets() {
        let (s, d) = parse(
            "192.0.2.1 198.51.100.1: PSK \"a b#c\"\n\
             2001:db8::1 2001:db8:: : PSK 'single'\n\
             @a.example : PSK bare\n\
             : PSK 0x6869_21\n\
             %any 203.0.113.9 : PSK 0sYWJjZA==\n\
             @host\n   @peer : PSK \"continued\"\n\
             : RSA {\n  Modulus: 0x00\n}\n",
        );
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        assert_eq!(d.warnings.len(), 1);
        let got: Vec<&[u8]> = s.entries.iter().map(|e| e.psk.expose()).collect();
        assert_eq!(
            got,
            vec![
                &b"a b#c"[..],
                b"single",
                b"bare",
                b"hi!",
                b"abcd",
                b"continued"
            ]
        );
        assert_eq!(s.entries[1].ids[1], id("2001:db8::"));
        assert_eq!(s.entries[5].loc.line, 6);
        assert_eq!(format!("{:?}", s.entries[0].psk), "<redacted>");
    }

    #[test]
    fn errors() {
        let (_, d) = parse(
            "192.0.2.1 198.51.100.1 \"nopsk\"\n\
             a : PSK\n\
             a : PSK \"x\" extra\n\
             a : PSK \"open\n\
             a : FOO x\n\
             a b :\n\
             bad..id : PSK x\n\
             a : PSK 0xzz\n",
        );
        let lines: Vec<u32> = d.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, (1..=8).collect::<Vec<_>>(), "{:?}", d.errors);
        assert_eq!(d.errors[0].kind, ConfigErrorKind::SecretWithoutPsk);
        assert_eq!(d.errors[3].kind, ConfigErrorKind::UnterminatedQuote);
        assert_eq!(d.errors[5].kind, ConfigErrorKind::SecretWithoutPsk);
    }

    #[test]
    fn precedence() {
        let (s, _) = parse(
            ": PSK \"any\"\n\
             %any 198.51.100.1 : PSK \"remote-any\"\n\
             192.0.2.1 198.51.100.1 : PSK \"both\"\n\
             192.0.2.1 198.51.100.2 : PSK \"other\"\n\
             @solo : PSK \"solo\"\n",
        );
        let l = id("192.0.2.1");
        let get = |local: Option<&Identity>, remote: &str| {
            s.lookup(local, &id(remote))
                .map(|m| (m.entry.psk.expose().to_vec(), m.quality))
        };
        assert_eq!(
            get(Some(&l), "198.51.100.1"),
            Some((b"both".to_vec(), MatchQuality::BothSides))
        );
        assert_eq!(
            get(None, "198.51.100.1"),
            Some((b"remote-any".to_vec(), MatchQuality::OneSide))
        );
        assert_eq!(get(Some(&l), "198.51.100.2").unwrap().0, b"other");
        assert_eq!(
            get(Some(&l), "203.0.113.1"),
            Some((b"any".to_vec(), MatchQuality::AnyPair))
        );
        assert_eq!(get(Some(&l), "@solo").unwrap().0, b"solo");
        let (s2, _) = parse("a b : PSK \"1\"\n");
        assert!(s2.lookup(Some(&id("a")), &id("c")).is_none());
        let (s3, _) = parse(": PSK \"1\"\n%any : PSK \"2\"\n");
        let m = s3.lookup(None, &id("c")).unwrap();
        assert_eq!(m.ambiguous_with.unwrap().loc.line, 2);
    }

    #[test]
    fn psk_equality_is_by_value() {
        assert_eq!(Psk::new(b"k".to_vec()), Psk::new(b"k".to_vec()));
        assert_ne!(Psk::new(b"k".to_vec()), Psk::new(b"kk".to_vec()));
    }
}
