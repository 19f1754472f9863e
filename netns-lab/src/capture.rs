//! Packet captures inside lab namespaces: `tcpdump` on one interface of one
//! namespace, started as a recorded lab process (by PID), bounded in time,
//! writing a pcap file into the lab's state directory; the file is then
//! read back through `tcpdump -r` with a filter expression.

use crate::{find_in_path, run_with_timeout, Lab, LabError, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Snapshot length of captures: enough for Ethernet + IPv4/IPv6 + TCP with
/// options, or outer IP + UDP + ESP header.
pub const SNAPLEN: u32 = 256;

/// A running `tcpdump` in a lab namespace. Stop it with [`Capture::stop`];
/// if a test fails first, the lab stops it with everything else it started.
#[derive(Debug)]
pub struct Capture {
    pid: u32,
    file: PathBuf,
    log: PathBuf,
    what: String,
}

impl Capture {
    /// Start capturing every packet on `iface` in `ns` into
    /// `<state_dir>/<name>.pcap`. Returns once tcpdump reports that it is
    /// listening (so traffic sent afterwards is captured). The capture ends
    /// by itself after `max` (SIGINT from `timeout(1)`) if not stopped
    /// before.
    pub fn start(
        lab: &mut Lab,
        ns: &str,
        iface: &str,
        name: &str,
        max: Duration,
    ) -> Result<Capture> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(LabError::Invalid(format!("capture name {name:?}")));
        }
        let file = lab.state_dir().join(format!("{name}.pcap"));
        let log = lab.state_dir().join(format!("{name}.tcpdump.log"));
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_file(&log);
        let secs = max.as_secs().max(1).to_string();
        let snap = SNAPLEN.to_string();
        let f = file.display().to_string();
        // --immediate-mode: hand each packet to tcpdump at once (with
        // TPACKET_V3 blocks, packets still in the ring when tcpdump is
        // stopped would be lost); -U: write each packet as it arrives;
        // -Z root: keep the privileges needed to write into the state
        // directory; -n: no DNS.
        let argv = [
            "timeout",
            "-s",
            "INT",
            &secs,
            "tcpdump",
            "--immediate-mode",
            "-i",
            iface,
            "-n",
            "-U",
            "-Z",
            "root",
            "-s",
            &snap,
            "-w",
            &f,
        ];
        let pid = lab.spawn(ns, &argv, &log)?;
        let what = format!("tcpdump on {iface} in {ns}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("listening on") {
                break;
            }
            if !lab.is_running(pid) {
                return Err(LabError::Failed {
                    cmd: what,
                    status: format!("{:?}", lab.exit_status(pid)),
                    output: text,
                });
            }
            if Instant::now() > deadline {
                lab.stop(pid);
                return Err(LabError::Timeout {
                    what: format!("{what} to start listening"),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Capture {
            pid,
            file,
            log,
            what,
        })
    }

    /// PID of the capture process (`timeout`, which runs tcpdump).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Stop the capture (SIGTERM by PID, tcpdump flushes and exits) and
    /// return the finished file.
    pub fn stop(self, lab: &mut Lab) -> Result<Pcap> {
        // Let packets already on the wire reach the capture.
        std::thread::sleep(Duration::from_millis(100));
        let _ = lab.terminate(self.pid, Duration::from_secs(5));
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        if !self.file.exists() {
            return Err(LabError::Failed {
                cmd: self.what,
                status: "no capture file".into(),
                output: log,
            });
        }
        let summary = log
            .lines()
            .filter(|l| l.contains("packets"))
            .collect::<Vec<_>>()
            .join("; ");
        // A capture that missed packets cannot prove an absence.
        let stat = |what: &str| {
            log.lines()
                .find(|l| l.ends_with(what))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
        };
        let (captured, received, dropped) = (
            stat("packets captured"),
            stat("packets received by filter"),
            stat("packets dropped by kernel"),
        );
        match (captured, received, dropped) {
            (Some(c), Some(r), Some(0)) if c >= r => {}
            _ => {
                return Err(LabError::Failed {
                    cmd: self.what,
                    status: "incomplete capture".into(),
                    output: summary,
                })
            }
        }
        Ok(Pcap {
            path: self.file,
            summary,
        })
    }
}

/// A finished capture file.
#[derive(Debug, Clone)]
pub struct Pcap {
    path: PathBuf,
    summary: String,
}

impl Pcap {
    /// The pcap file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// tcpdump's closing statistics ("N packets captured; ...").
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// One line per packet matching the pcap-filter expression `filter`
    /// (empty: every packet), as printed by `tcpdump -r FILE -nn`
    /// (TCP options such as `mss 1460` included).
    pub fn lines(&self, filter: &str) -> Result<Vec<String>> {
        let mut c = Command::new("tcpdump");
        c.args(["-r"]).arg(&self.path).args(["-nn", "-tt"]);
        if !filter.is_empty() {
            c.arg(filter);
        }
        let out = run_with_timeout(&mut c, Duration::from_secs(20))?;
        if !out.status.success() {
            return Err(LabError::Failed {
                cmd: format!("tcpdump -r {} {filter}", self.path.display()),
                status: out.status.to_string(),
                output: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// Number of packets matching `filter`.
    pub fn count(&self, filter: &str) -> Result<usize> {
        self.lines(filter).map(|l| l.len())
    }
}

/// The values of the TCP `mss` option in tcpdump lines (`mss 1460`), in
/// order; lines without one are skipped.
pub fn mss_values<S: AsRef<str>>(lines: &[S]) -> Vec<u16> {
    lines
        .iter()
        .filter_map(|l| {
            let l = l.as_ref();
            let i = l.find("options [mss ")? + "options [mss ".len();
            let digits: String = l[i..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// `true` if `tcpdump` is installed.
pub(crate) fn have_tcpdump() -> bool {
    find_in_path("tcpdump") && find_in_path("timeout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mss_from_tcpdump_lines() {
        let l = [
            "1.0 IP 10.1.0.2.40000 > 10.2.0.2.5201: Flags [S], seq 1, win 64240, options [mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0",
            "1.1 IP 10.2.0.2.5201 > 10.1.0.2.40000: Flags [S.], seq 2, ack 2, win 65160, options [mss 1359,sackOK,TS val 2 ecr 1,nop,wscale 7], length 0",
            "1.2 IP 10.1.0.2.40000 > 10.2.0.2.5201: Flags [.], ack 1, win 502, options [nop,nop,TS val 3 ecr 2], length 0",
        ];
        assert_eq!(mss_values(&l), vec![1460, 1359]);
        assert!(mss_values(&["options [mss x]"]).is_empty());
    }
}
