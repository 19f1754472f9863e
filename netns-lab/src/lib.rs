//! `netns-lab`: network-namespace test lab for tun-bridge (Linux, root).
//!
//! Owns everything a namespace-based test needs and nothing else:
//! * [`Lab`]: creates namespaces named `tb-<pid>-<n>-<role>` (unique per
//!   process and per lab, so parallel test binaries and parallel tests in one
//!   binary never collide), runs commands in them, records the PIDs of what it
//!   started and stops only those (TERM, then KILL), and deletes its
//!   namespaces on drop — also when a test panics.
//! * [`TwoSites`]: host A — gateway A — WAN veth — gateway B — host B, the
//!   topology of the shell harness (`topo_s2s_up`) with parametric addresses.
//! * [`StrongSwan`]: a charon (kernel-libipsec) peer in a namespace driven
//!   through `swanctl`, configured from a [`SwanConnection`].
//! * [`traffic`]: bulk TCP transfer with SHA-256 check, UDP echo probe.
//! * [`Capture`]: `tcpdump` on an interface of a namespace (by PID, bounded
//!   in time) and [`Pcap`] to count/print the captured packets by filter.
//! * [`in_netns`]: run a closure on a thread that has `setns`-ed into a
//!   namespace (sockets/devices it creates live in that namespace).
//!
//! Namespaces are connected only to each other, never to the root namespace.
//! Every wait is bounded by a timeout.
#![deny(missing_docs)]

pub mod bgp;
mod capture;
mod process;
mod strongswan;
mod topo;
pub mod traffic;

pub use capture::{mss_values, Capture, Pcap, SNAPLEN};
pub use process::{run_with_timeout, ChildProc};
pub use strongswan::{
    StrongSwan, SwanChild, SwanConnection, VgwTimers, AWS_ESP_PROPOSALS, AWS_IKE_PROPOSALS, CHARON,
    KERNEL_LIBIPSEC_PLUGIN,
};
pub use topo::{NatSites, TwoSites, TwoSitesConfig};

use std::fmt;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Prefix of every namespace this crate creates.
pub const NS_PREFIX: &str = "tb-";

/// Errors of lab operations.
#[derive(Debug)]
#[non_exhaustive]
pub enum LabError {
    /// A command could not be started.
    Spawn {
        /// The command line.
        cmd: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A command exited unsuccessfully.
    Failed {
        /// The command line.
        cmd: String,
        /// Exit status description.
        status: String,
        /// Captured stderr (and stdout) of the command.
        output: String,
    },
    /// A bounded wait ran out.
    Timeout {
        /// What was awaited.
        what: String,
    },
    /// File-system error (state directories, config files).
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A caller-supplied name or value was rejected.
    Invalid(String),
}

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabError::Spawn { cmd, source } => write!(f, "cannot run `{cmd}`: {source}"),
            LabError::Failed {
                cmd,
                status,
                output,
            } => write!(f, "`{cmd}` failed ({status}): {}", output.trim_end()),
            LabError::Timeout { what } => write!(f, "timed out waiting for {what}"),
            LabError::Io { what, source } => write!(f, "{what}: {source}"),
            LabError::Invalid(s) => write!(f, "invalid: {s}"),
        }
    }
}

impl std::error::Error for LabError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LabError::Spawn { source, .. } | LabError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn find_in_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
        || ["/usr/sbin", "/usr/bin", "/sbin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(bin).is_file())
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, LabError>;

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

/// Decide whether a privileged test may run.
///
/// Returns `true` when the prerequisite holds. Otherwise prints a clear skip
/// message and returns `false` — unless the environment variable `CI` is set,
/// in which case it panics: tests in CI must never skip silently.
fn gate(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("netns-lab: {what} is required (CI is set, refusing to skip)");
    }
    // Written to the stderr handle directly (not eprintln!), so the test
    // harness's output capture does not hide the skip.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: netns-lab: {what} is required; test skipped (set CI=1 to make this fatal)"
    );
    false
}

/// Run `cmd` with `args`, bounded by `timeout`; error unless it exits 0.
pub fn run_checked(cmd: &str, args: &[&str], timeout: Duration) -> Result<Output> {
    let mut c = Command::new(cmd);
    c.args(args);
    let out = run_with_timeout(&mut c, timeout)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(LabError::Failed {
            cmd: format!("{cmd} {}", args.join(" ")),
            status: out.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ),
        })
    }
}

const CMD_TIMEOUT: Duration = Duration::from_secs(20);

/// Run `ip ARGS...` (bounded), error unless it succeeds.
pub fn ip(args: &[&str]) -> Result<Output> {
    run_checked("ip", args, CMD_TIMEOUT)
}

/// A set of namespaces and processes owned by one test; torn down on drop.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    procs: Vec<ChildProc>,
    state_dir: PathBuf,
    keep_state: bool,
}

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// `true` if the process runs as root (else skip / fail under `CI`, see
    /// the crate docs). Call first in every namespace test:
    /// `if !Lab::require_root() { return; }`.
    pub fn require_root() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        gate(euid == 0, "root (network namespaces)")
    }

    /// `true` if root and strongSwan's charon with the kernel-libipsec plugin
    /// and swanctl are installed (else skip / fail under `CI`).
    pub fn require_strongswan() -> bool {
        if !Self::require_root() {
            return false;
        }
        let have = std::path::Path::new(CHARON).exists()
            && std::path::Path::new(KERNEL_LIBIPSEC_PLUGIN).exists()
            && find_in_path("swanctl");
        gate(
            have,
            "strongSwan (apt-get install strongswan-charon strongswan-swanctl libcharon-extra-plugins)",
        )
    }

    /// `true` if root and `tcpdump` (plus coreutils' `timeout`) are
    /// installed (else skip / fail under `CI`).
    pub fn require_tcpdump() -> bool {
        if !Self::require_root() {
            return false;
        }
        gate(capture::have_tcpdump(), "tcpdump (apt-get install tcpdump)")
    }

    /// A new, empty lab. Also removes namespaces left behind by earlier lab
    /// processes that no longer exist (e.g. a test binary killed by SIGKILL).
    pub fn new() -> Result<Lab> {
        reap_stale_namespaces();
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{NS_PREFIX}{}-{n}-", std::process::id());
        let state_dir = std::env::temp_dir().join(format!("netns-lab-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&state_dir).map_err(io_err(format!("mkdir {state_dir:?}")))?;
        Ok(Lab {
            prefix,
            namespaces: Vec::new(),
            procs: Vec::new(),
            state_dir,
            keep_state: std::env::var_os("NETNS_LAB_KEEP").is_some(),
        })
    }

    /// The namespace-name prefix of this lab (`tb-<pid>-<n>-`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Directory for per-lab state (configs, logs); removed on drop unless
    /// `NETNS_LAB_KEEP` is set.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// Create namespace `<prefix><role>` with `lo` up and IPv6 disabled on
    /// its links; returns its full name.
    pub fn add_netns(&mut self, role: &str) -> Result<String> {
        self.add_netns_opts(role, false)
    }

    /// Like [`Lab::add_netns`], optionally keeping IPv6 enabled.
    pub fn add_netns_opts(&mut self, role: &str, ipv6: bool) -> Result<String> {
        if role.is_empty()
            || !role
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(LabError::Invalid(format!("namespace role {role:?}")));
        }
        let name = format!("{}{role}", self.prefix);
        ip(&["netns", "add", &name])?;
        self.namespaces.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        let v = if ipv6 { "0" } else { "1" };
        self.exec(
            &name,
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.all.disable_ipv6={v}"),
                &format!("net.ipv6.conf.default.disable_ipv6={v}"),
            ],
        )?;
        Ok(name)
    }

    /// Namespaces created by this lab.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// `ip -n NS ARGS...`.
    pub fn ip_in(&self, ns: &str, args: &[&str]) -> Result<Output> {
        let mut v = vec!["-n", ns];
        v.extend_from_slice(args);
        ip(&v)
    }

    /// Run a command to completion inside `ns` (bounded by 20 s).
    pub fn exec(&self, ns: &str, argv: &[&str]) -> Result<Output> {
        self.exec_timeout(ns, argv, CMD_TIMEOUT)
    }

    /// Run a command to completion inside `ns`, bounded by `timeout`; error
    /// unless it exits 0.
    pub fn exec_timeout(&self, ns: &str, argv: &[&str], timeout: Duration) -> Result<Output> {
        let mut v = vec!["netns", "exec", ns];
        v.extend_from_slice(argv);
        run_checked("ip", &v, timeout)
    }

    /// Like [`Lab::exec_timeout`] but returns the output whatever the exit
    /// status (for commands expected to fail).
    pub fn exec_status(&self, ns: &str, argv: &[&str], timeout: Duration) -> Result<Output> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(argv);
        run_with_timeout(&mut c, timeout)
    }

    /// Start a background command inside `ns` (stdout+stderr to `log`); the
    /// lab records its PID and stops it on drop. Returns the PID.
    pub fn spawn(&mut self, ns: &str, argv: &[&str], log: &std::path::Path) -> Result<u32> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(argv);
        let p = ChildProc::spawn(c, log)?;
        let pid = p.pid();
        self.procs.push(p);
        Ok(pid)
    }

    /// Start a background command (already wrapped as needed by the caller)
    /// and record it; returns the PID.
    pub fn spawn_command(&mut self, cmd: Command, log: &std::path::Path) -> Result<u32> {
        let p = ChildProc::spawn(cmd, log)?;
        let pid = p.pid();
        self.procs.push(p);
        Ok(pid)
    }

    /// `true` while the recorded process `pid` is running.
    pub fn is_running(&mut self, pid: u32) -> bool {
        self.procs
            .iter_mut()
            .find(|p| p.pid() == pid)
            .map(|p| p.is_running())
            .unwrap_or(false)
    }

    /// Stop the recorded process `pid` (TERM, up to 3 s, then KILL).
    pub fn stop(&mut self, pid: u32) {
        if let Some(i) = self.procs.iter().position(|p| p.pid() == pid) {
            let mut p = self.procs.remove(i);
            p.stop();
        }
    }

    /// Stop the recorded process `pid` with SIGTERM and wait up to `grace`
    /// for it to exit: `Some(status)` if it exited by itself, `None` if it
    /// had to be killed or is not a process of this lab.
    pub fn terminate(&mut self, pid: u32, grace: Duration) -> Option<std::process::ExitStatus> {
        let i = self.procs.iter().position(|p| p.pid() == pid)?;
        let mut p = self.procs.remove(i);
        p.terminate(grace)
    }

    /// Exit status of the recorded process `pid` if it has exited.
    pub fn exit_status(&mut self, pid: u32) -> Option<std::process::ExitStatus> {
        self.procs
            .iter_mut()
            .find(|p| p.pid() == pid)
            .and_then(|p| p.try_status())
    }

    /// Create a veth pair `a_if` in `a_ns` / `b_if` in `b_ns`, assign the
    /// optional `addr/prefix` strings and bring both ends up.
    pub fn veth(
        &self,
        a_ns: &str,
        a_if: &str,
        a_addr: Option<&str>,
        b_ns: &str,
        b_if: &str,
        b_addr: Option<&str>,
    ) -> Result<()> {
        for n in [a_if, b_if] {
            if n.is_empty() || n.len() > 15 {
                return Err(LabError::Invalid(format!("interface name {n:?}")));
            }
        }
        self.ip_in(
            a_ns,
            &[
                "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b_ns,
            ],
        )?;
        if let Some(a) = a_addr {
            self.ip_in(a_ns, &["addr", "add", a, "dev", a_if])?;
        }
        if let Some(b) = b_addr {
            self.ip_in(b_ns, &["addr", "add", b, "dev", b_if])?;
        }
        self.ip_in(a_ns, &["link", "set", a_if, "up"])?;
        self.ip_in(b_ns, &["link", "set", b_if, "up"])?;
        Ok(())
    }

    /// Enable IPv4 (and IPv6) forwarding and disable rp_filter in `ns`.
    pub fn forwarding_on(&self, ns: &str) -> Result<()> {
        self.exec(
            ns,
            &[
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ],
        )?;
        Ok(())
    }

    /// `ping -c COUNT -i 0.2 -W 2 DST` from `ns`; `Ok(true)` when all
    /// replies arrived (bounded).
    pub fn ping(&self, ns: &str, dst: &str, count: u32) -> Result<bool> {
        let c = count.to_string();
        let t = Duration::from_secs(u64::from(count) + 10);
        let out = self.exec_status(
            ns,
            &["ping", "-n", "-c", &c, "-i", "0.2", "-W", "2", dst],
            t,
        )?;
        Ok(out.status.success())
    }

    /// Tear everything down now (also done on drop).
    pub fn teardown(&mut self) {
        for mut p in self.procs.drain(..).rev() {
            p.stop();
        }
        for ns in self.namespaces.drain(..).rev() {
            delete_netns(&ns);
        }
        if !self.keep_state {
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

impl fmt::Debug for Lab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lab")
            .field("prefix", &self.prefix)
            .field("namespaces", &self.namespaces)
            .field(
                "procs",
                &self.procs.iter().map(|p| p.pid()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Stop whatever still runs in one of *our* namespaces (started by us,
/// directly or as a descendant), by PID, then delete the namespace.
fn delete_netns(ns: &str) {
    if !ns.starts_with(NS_PREFIX) {
        return;
    }
    if let Ok(out) = run_checked("ip", &["netns", "pids", ns], Duration::from_secs(5)) {
        for pid in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|s| s.parse::<i32>().ok())
        {
            process::kill_pid(pid);
        }
    }
    let _ = run_checked("ip", &["netns", "del", ns], Duration::from_secs(10));
}

/// Delete `tb-<pid>-...` namespaces whose creating process is gone.
fn reap_stale_namespaces() {
    let Ok(rd) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            delete_netns(&name);
        }
    }
}

/// Run `f` on a new thread that has entered network namespace `name`
/// (`/var/run/netns/NAME`) with `setns(CLONE_NEWNET)`; returns its result.
///
/// Sockets and devices created by `f` belong to that namespace and stay
/// usable from any thread afterwards. Panics in `f` propagate.
pub fn in_netns<R, F>(name: &str, f: F) -> Result<R>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let path = format!("/var/run/netns/{name}");
    let file = File::open(&path).map_err(io_err(format!("open {path}")))?;
    std::thread::scope(|s| {
        let h = s.spawn(move || -> Result<R> {
            // SAFETY: `file` is an open namespace file descriptor that lives
            // for the duration of the call; setns only changes this thread's
            // network namespace (the thread is ours and ends after `f`).
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(LabError::Io {
                    what: format!("setns({path})"),
                    source: std::io::Error::last_os_error(),
                });
            }
            drop(file);
            Ok(f())
        });
        match h.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}
