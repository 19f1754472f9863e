//! Diagnostics of the configuration layer: typed errors with a source
//! location (`file:line: message`) and warnings.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// A position in a configuration file. Line 0 means "the whole file".
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    /// The file, as given on the command line or resolved from an `include`.
    pub file: PathBuf,
    /// 1-based line number; 0 when the message is about the whole file.
    pub line: u32,
}

impl Location {
    /// A location in `file` at `line`.
    pub fn new(file: impl Into<PathBuf>, line: u32) -> Self {
        Self {
            file: file.into(),
            line,
        }
    }

    /// A location meaning the whole file.
    pub fn whole_file(file: &Path) -> Self {
        Self::new(file, 0)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One configuration error: where, and what.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConfigError {
    /// File the error is in.
    pub file: PathBuf,
    /// 1-based line (0: the whole file).
    pub line: u32,
    /// What is wrong.
    pub kind: ConfigErrorKind,
}

impl ConfigError {
    /// Builds an error at `loc`.
    pub fn at(loc: &Location, kind: ConfigErrorKind) -> Self {
        Self {
            file: loc.file.clone(),
            line: loc.line,
            kind,
        }
    }

    /// The error's location.
    pub fn location(&self) -> Location {
        Location::new(self.file.clone(), self.line)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.kind)
    }
}

impl std::error::Error for ConfigError {}

/// The cause of a [`ConfigError`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be read.
    Io(String),
    /// The file is not valid UTF-8.
    NotUtf8,
    /// A `"` without its closing partner.
    UnterminatedQuote,
    /// A `{` without its closing `}`.
    UnterminatedBrace,
    /// A line that fits none of the accepted forms.
    Syntax(String),
    /// A key this parser does not know in the given section kind.
    UnknownKey {
        /// The key as written.
        key: String,
        /// `config setup` or `conn`.
        section: &'static str,
    },
    /// The same key (or one of its aliases) twice in one section.
    DuplicateKey {
        /// The key as written the second time.
        key: String,
        /// Line of the first occurrence.
        first_line: u32,
    },
    /// A value that does not parse or is out of range.
    InvalidValue {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A value that is well formed but not supported by tun-bridge.
    Unsupported {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Why it is not supported.
        reason: String,
    },
    /// A section type other than `config` or `conn`.
    UnknownSection(String),
    /// Two `conn` sections with the same name.
    DuplicateConn {
        /// The connection name.
        name: String,
        /// Where the first one is.
        first: Location,
    },
    /// `also=` names a section that does not exist.
    AlsoNotFound(String),
    /// `also=` chain loops back on itself; the names along the loop.
    AlsoCycle(Vec<String>),
    /// An `include` without wildcards names a file that does not exist.
    IncludeNotFound(String),
    /// An included file includes itself, directly or not.
    IncludeCycle(String),
    /// Includes nested deeper than the limit.
    IncludeTooDeep(usize),
    /// Includes are disabled for this parse (fuzzing, in-memory parsing).
    IncludesDisabled(String),
    /// A required key is missing from a connection.
    MissingKey {
        /// The key.
        key: &'static str,
        /// What it is needed for.
        reason: &'static str,
    },
    /// Two settings contradict each other.
    Conflict(String),
    /// An `ipsec.secrets` line without `: PSK ...` (or another secret type).
    SecretWithoutPsk,
    /// A malformed `ipsec.secrets` entry.
    SecretSyntax(String),
    /// No pre-shared key in the secrets file matches the connection.
    NoPsk {
        /// Connection name.
        conn: String,
        /// The identities that were looked up.
        ids: String,
    },
    /// ike-lite's proposal parser rejected an `ike=`, `esp=` or
    /// `phase2alg=` value.
    Proposal {
        /// The key as written.
        key: String,
        /// The value as written.
        value: String,
        /// Why ike-lite rejected it.
        message: String,
    },
}

impl fmt::Display for ConfigErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ConfigErrorKind::*;
        match self {
            Io(m) => write!(f, "cannot read file: {m}"),
            NotUtf8 => write!(f, "file is not valid UTF-8"),
            UnterminatedQuote => write!(f, "unterminated quoted string"),
            UnterminatedBrace => write!(f, "unterminated '{{' list"),
            Syntax(m) => write!(f, "syntax error: {m}"),
            UnknownKey { key, section } => write!(f, "unknown key '{key}' in {section} section"),
            DuplicateKey { key, first_line } => {
                write!(f, "duplicate key '{key}' (first set on line {first_line})")
            }
            InvalidValue { key, value, reason } => {
                write!(f, "invalid value '{value}' for '{key}': {reason}")
            }
            Unsupported { key, value, reason } => {
                write!(f, "unsupported '{key}={value}': {reason}")
            }
            UnknownSection(s) => write!(
                f,
                "unknown section type '{s}' (expected 'config setup' or 'conn NAME')"
            ),
            DuplicateConn { name, first } => {
                write!(f, "duplicate conn '{name}' (first defined at {first})")
            }
            AlsoNotFound(n) => write!(f, "also={n}: no such conn section"),
            AlsoCycle(path) => write!(f, "also= cycle: {}", path.join(" -> ")),
            IncludeNotFound(p) => write!(f, "include file not found: {p}"),
            IncludeCycle(p) => write!(f, "include cycle: {p} includes itself"),
            IncludeTooDeep(n) => write!(f, "includes nested deeper than {n} levels"),
            IncludesDisabled(p) => write!(f, "include {p}: includes are disabled in this context"),
            MissingKey { key, reason } => write!(f, "missing '{key}=': {reason}"),
            Conflict(m) => write!(f, "conflicting settings: {m}"),
            SecretWithoutPsk => write!(f, "secret entry without ': PSK \"...\"'"),
            SecretSyntax(m) => write!(f, "bad secret entry: {m}"),
            NoPsk { conn, ids } => {
                write!(f, "conn {conn}: no PSK in the secrets file matches {ids}")
            }
            Proposal {
                key,
                value,
                message,
            } => write!(f, "invalid {key}= proposal '{value}': {message}"),
        }
    }
}

/// A non-fatal finding, printed as `file:line: warning: message`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConfigWarning {
    /// File the warning is about.
    pub file: PathBuf,
    /// 1-based line (0: the whole file).
    pub line: u32,
    /// The message.
    pub message: String,
}

impl ConfigWarning {
    /// Builds a warning at `loc`.
    pub fn at(loc: &Location, message: impl Into<String>) -> Self {
        Self {
            file: loc.file.clone(),
            line: loc.line,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: warning: {}",
            self.file.display(),
            self.line,
            self.message
        )
    }
}

/// Errors and warnings collected over a whole parse (never just the first).
///
/// Identical messages at the same location are recorded once, so a bad line
/// in `conn %default` is reported once, not once per connection.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    /// Errors, in the order found.
    pub errors: Vec<ConfigError>,
    /// Warnings, in the order found.
    pub warnings: Vec<ConfigWarning>,
    seen_errors: HashSet<ConfigError>,
    seen_warnings: HashSet<ConfigWarning>,
}

impl Diagnostics {
    /// Records an error at `loc` (deduplicated).
    pub fn error(&mut self, loc: &Location, kind: ConfigErrorKind) {
        let e = ConfigError::at(loc, kind);
        if self.seen_errors.insert(e.clone()) {
            self.errors.push(e);
        }
    }

    /// Records a warning at `loc` (deduplicated).
    pub fn warn(&mut self, loc: &Location, message: impl Into<String>) {
        let w = ConfigWarning::at(loc, message);
        if self.seen_warnings.insert(w.clone()) {
            self.warnings.push(w);
        }
    }

    /// True when at least one error was recorded.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Appends everything from `other`.
    pub fn extend(&mut self, other: Diagnostics) {
        for e in other.errors {
            if self.seen_errors.insert(e.clone()) {
                self.errors.push(e);
            }
        }
        for w in other.warnings {
            if self.seen_warnings.insert(w.clone()) {
                self.warnings.push(w);
            }
        }
    }
}
