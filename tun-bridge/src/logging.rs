//! How log lines look and where they go: the `--log-format` choice (`text`
//! or `json`, one object per line), journald detection, and the `tracing`
//! subscriber of the binary.
//!
//! Under systemd, stderr is a stream to journald, which stamps every line
//! itself; the text format then leaves out its own timestamp (and colours).
//! systemd says so with `JOURNAL_STREAM=DEV:INODE` (decimal `st_dev` and
//! `st_ino` of that stream, see systemd.exec(5)); the variable is inherited
//! by children whose stderr may be elsewhere, so it counts only when it
//! names the file stderr really is. The JSON format always carries its
//! `timestamp` field: a consumer of the objects needs it.
//!
//! The decisions are pure functions ([`journal_stream`], [`LogStyle::choose`]);
//! [`init`] reads the environment and installs the [`subscriber`].

use std::ffi::OsStr;
use std::io::{self, IsTerminal};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines: `TIMESTAMP LEVEL target: message key=value ...`.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`
    /// and the event's fields at the top level.
    Json,
}

/// What the subscriber writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogStyle {
    /// Text or JSON.
    pub format: LogFormat,
    /// Whether lines carry our own timestamp.
    pub timestamps: bool,
    /// Whether text lines carry ANSI colour codes.
    pub ansi: bool,
}

impl LogStyle {
    /// The style for `format` when stderr is (or is not) the journal and
    /// is (or is not) a terminal, with or without `NO_COLOR` set.
    pub fn choose(
        format: LogFormat,
        stderr_is_journal: bool,
        stderr_is_terminal: bool,
        no_color: bool,
    ) -> LogStyle {
        match format {
            LogFormat::Text => LogStyle {
                format,
                timestamps: !stderr_is_journal,
                ansi: stderr_is_terminal && !stderr_is_journal && !no_color,
            },
            LogFormat::Json => LogStyle {
                format,
                timestamps: true,
                ansi: false,
            },
        }
    }
}

/// Whether `JOURNAL_STREAM` (`DEV:INODE`, both decimal) names the file
/// whose `(st_dev, st_ino)` is `stderr`. An unset, malformed or stale
/// variable, or an unknown stderr, is not the journal.
pub fn journal_stream(journal_stream: Option<&OsStr>, stderr: Option<(u64, u64)>) -> bool {
    let (Some(value), Some(stderr)) = (journal_stream.and_then(OsStr::to_str), stderr) else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    match (dev.parse::<u64>(), ino.parse::<u64>()) {
        (Ok(dev), Ok(ino)) => (dev, ino) == stderr,
        _ => false,
    }
}

/// Installs the subscriber on stderr in `format`; the filter comes from
/// `RUST_LOG` (default `info`). A second call changes nothing.
pub fn init(format: LogFormat) {
    let journal = journal_stream(
        std::env::var_os("JOURNAL_STREAM").as_deref(),
        crate::sys::stdio::stderr_identity().ok(),
    );
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let style = LogStyle::choose(format, journal, io::stderr().is_terminal(), no_color);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _already_set = subscriber(style, filter, io::stderr).try_init();
}

/// The subscriber of `style` and `filter` writing to `writer` (stderr for
/// the binary; a buffer in tests, which then read what `up` would write).
pub fn subscriber<W>(
    style: LogStyle,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(style.ansi);
    match (style.format, style.timestamps) {
        (LogFormat::Json, _) => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .finish(),
        ),
        (LogFormat::Text, true) => Box::new(builder.finish()),
        (LogFormat::Text, false) => Box::new(builder.without_time().finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn env(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    #[test]
    fn journal_stream_matches_only_stderrs_device_and_inode() {
        assert!(journal_stream(env("8:12345").as_deref(), Some((8, 12345))));
        // Inherited from a parent whose stderr was the journal; ours is not.
        assert!(!journal_stream(env("8:12345").as_deref(), Some((8, 12346))));
        assert!(!journal_stream(env("9:12345").as_deref(), Some((8, 12345))));
        assert!(!journal_stream(None, Some((8, 12345))));
        assert!(!journal_stream(env("8:12345").as_deref(), None));
    }

    #[test]
    fn malformed_journal_stream_is_not_the_journal() {
        for bad in [
            "",
            ":",
            "8",
            "8:",
            ":12345",
            "8:12345:1",
            "x:1",
            "8:-1",
            " 8:12345",
        ] {
            assert!(
                !journal_stream(env(bad).as_deref(), Some((8, 12345))),
                "{bad:?}"
            );
        }
        let not_utf8 = {
            use std::os::unix::ffi::OsStringExt;
            OsString::from_vec(vec![0xff, b':', b'1'])
        };
        assert!(!journal_stream(Some(&not_utf8), Some((8, 12345))));
    }

    #[test]
    fn text_drops_timestamp_and_colour_under_journald() {
        let s = LogStyle::choose(LogFormat::Text, true, false, false);
        assert!(!s.timestamps && !s.ansi);
        let s = LogStyle::choose(LogFormat::Text, false, false, false);
        assert!(
            s.timestamps && !s.ansi,
            "a file or pipe gets timestamps, no colour"
        );
        let s = LogStyle::choose(LogFormat::Text, false, true, false);
        assert!(s.timestamps && s.ansi, "a terminal gets colour");
        let s = LogStyle::choose(LogFormat::Text, false, true, true);
        assert!(!s.ansi, "NO_COLOR");
    }

    #[test]
    fn json_always_has_timestamps_and_no_colour() {
        for (journal, tty) in [(false, false), (true, false), (false, true), (true, true)] {
            let s = LogStyle::choose(LogFormat::Json, journal, tty, false);
            assert_eq!(
                s,
                LogStyle {
                    format: LogFormat::Json,
                    timestamps: true,
                    ansi: false
                }
            );
        }
    }

    #[test]
    fn log_format_parses_from_the_command_line() {
        use clap::ValueEnum;
        assert_eq!(LogFormat::from_str("text", false), Ok(LogFormat::Text));
        assert_eq!(LogFormat::from_str("json", false), Ok(LogFormat::Json));
        assert!(LogFormat::from_str("xml", false).is_err());
        assert_eq!(LogFormat::default(), LogFormat::Text);
    }
}
