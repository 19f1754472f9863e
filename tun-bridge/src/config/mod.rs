//! Configuration: Libreswan/strongSwan-style `ipsec.conf` and
//! `ipsec.secrets`, as AWS hands them out, read unchanged.
//!
//! Pipeline: [`conf`] (lines, sections, includes) → [`effective`] (typed,
//! validated [`EffectiveConn`]s with defaults, `also=`, `%default`) with PSKs
//! from [`secrets`] and `ike=`/`esp=` parsed into ike-lite proposals by
//! [`proposals`]. Every stage collects all problems as
//! [`ConfigError`]s (`file:line: message`) and [`ConfigWarning`]s. The IKE
//! flood limits of `config setup` are typed by [`flood`]. Nothing here
//! touches the network.

pub mod conf;
pub mod effective;
pub mod error;
pub mod flood;
pub mod interface;
pub mod proposals;
pub mod secrets;
pub mod source;
pub mod values;

use std::fmt;
use std::path::Path;

pub use effective::{Dpd, EffectiveConn, SetupSettings, TunnelSettings};
pub use error::{ConfigError, ConfigErrorKind, ConfigWarning, Diagnostics, Location};
pub use proposals::{EspProposals, IkeProposals, Proposals};
pub use secrets::{Psk, SecretEntry, Secrets};
pub use source::{FsLoader, NoIncludes, SourceLoader};

/// A loaded, valid configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// `config setup` keys.
    pub setup: SetupSettings,
    /// Connections in file order (templates used only via `also=` excluded).
    pub conns: Vec<EffectiveConn>,
    /// All PSK entries (for lookups once `%defaultroute` is resolved).
    pub secrets: Secrets,
}

impl Config {
    /// The connection called `name`.
    pub fn conn(&self, name: &str) -> Option<&EffectiveConn> {
        self.conns.iter().find(|c| c.name == name)
    }
}

/// Successful load: the configuration and any warnings.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Warnings, sorted by file and line.
    pub warnings: Vec<ConfigWarning>,
}

/// Failed load: every error found (sorted by file and line), and warnings.
#[derive(Clone, Debug)]
pub struct LoadFailure {
    /// Errors; never empty.
    pub errors: Vec<ConfigError>,
    /// Warnings.
    pub warnings: Vec<ConfigWarning>,
}

impl fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadFailure {}

/// Loads `config` and `secrets` from the file system.
pub fn load(config: &Path, secrets: &Path) -> Result<Loaded, LoadFailure> {
    load_with(config, secrets, &FsLoader)
}

/// Loads through an explicit loader.
pub fn load_with(
    config: &Path,
    secrets: &Path,
    loader: &dyn SourceLoader,
) -> Result<Loaded, LoadFailure> {
    let mut diag = Diagnostics::default();
    let raw = conf::parse_conf_file(config, loader, &mut diag);
    let sec = secrets::parse_secrets_file(secrets, loader, &mut diag);
    finish(raw, sec, diag)
}

/// Parses in-memory texts (named `conf_name` / `secrets_name` in messages).
/// `include` lines are errors: nothing outside the two strings is read.
pub fn parse_str(
    conf_text: &str,
    conf_name: &Path,
    secrets_text: &str,
    secrets_name: &Path,
) -> Result<Loaded, LoadFailure> {
    let mut diag = Diagnostics::default();
    let raw = conf::parse_conf_str(conf_text, conf_name, &NoIncludes, &mut diag);
    let sec = secrets::parse_secrets_str(secrets_text, secrets_name, &NoIncludes, &mut diag);
    finish(raw, sec, diag)
}

fn finish(
    raw: conf::RawConfig,
    secrets: Secrets,
    mut diag: Diagnostics,
) -> Result<Loaded, LoadFailure> {
    let (setup, conns) = effective::resolve(&raw, &secrets, &mut diag);
    diag.errors
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    diag.warnings
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    if diag.has_errors() {
        return Err(LoadFailure {
            errors: diag.errors,
            warnings: diag.warnings,
        });
    }
    Ok(Loaded {
        config: Config {
            setup,
            conns,
            secrets,
        },
        warnings: diag.warnings,
    })
}
