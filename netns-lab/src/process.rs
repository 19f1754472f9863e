//! Processes started by the lab: bounded runs and recorded background PIDs.

use crate::{LabError, Result};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Run `cmd` to completion, capturing stdout/stderr; kill it (by its PID)
/// and report [`LabError::Timeout`] if it runs longer than `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn {
            cmd: desc.clone(),
            source,
        })?;
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = so.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = se.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                kill_pid(child.id() as i32);
                let _ = child.wait();
                let _ = t_out.join();
                let _ = t_err.join();
                return Err(LabError::Timeout {
                    what: format!("{desc} ({timeout:?})"),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(source) => {
                return Err(LabError::Io {
                    what: format!("wait for {desc}"),
                    source,
                })
            }
        }
    };
    Ok(Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

/// Send TERM to `pid`, wait up to 3 s for it to disappear, then KILL.
///
/// Only ever called with PIDs this crate started (or processes living in a
/// namespace this crate created).
pub(crate) fn kill_pid(pid: i32) {
    if pid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a concrete positive PID has no memory-safety
    // preconditions; signal 0 only checks existence.
    unsafe {
        if libc::kill(pid, 0) != 0 {
            return;
        }
        libc::kill(pid, libc::SIGTERM);
    }
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        // A zombie child of ours still "exists" for kill(0); reap if ours.
        let mut st = 0;
        // SAFETY: waitpid on a specific PID with WNOHANG; fails harmlessly
        // with ECHILD when it is not our child.
        unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
        // SAFETY: as above.
        if unsafe { libc::kill(pid, 0) } != 0 {
            return;
        }
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// A background process started by the lab; stopped (TERM, then KILL) on
/// drop.
#[derive(Debug)]
pub struct ChildProc {
    child: Child,
    exited: bool,
}

impl ChildProc {
    /// Spawn `cmd` with stdin from /dev/null and stdout+stderr appended to
    /// `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> Result<ChildProc> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| LabError::Io {
                what: format!("open log {log:?}"),
                source,
            })?;
        let f2 = f.try_clone().map_err(|source| LabError::Io {
            what: "dup log fd".into(),
            source,
        })?;
        let desc = format!("{cmd:?}");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .map_err(|source| LabError::Spawn { cmd: desc, source })?;
        Ok(ChildProc {
            child,
            exited: false,
        })
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `true` while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        if self.exited {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(_)) | Err(_) => {
                self.exited = true;
                false
            }
            Ok(None) => true,
        }
    }

    /// Send SIGTERM and wait up to `grace` for the process to exit; returns
    /// its exit status, or `None` if it had to be killed (or had already
    /// been reaped without a recorded status).
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        // std caches the status of a reaped child, so this also works
        // after `is_running` saw the exit.
        if let Ok(Some(st)) = self.child.try_wait() {
            self.exited = true;
            return Some(st);
        }
        let pid = self.child.id() as i32;
        // SAFETY: signalling our own (not yet reaped) child by PID.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exited = true;
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.exited = true;
        None
    }

    /// Exit status if the process has exited (reaps it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.exited = true;
                Some(st)
            }
            _ => None,
        }
    }

    /// Stop the process: TERM, wait up to 3 s, then KILL; reaps it.
    pub fn stop(&mut self) {
        if !self.is_running() {
            return;
        }
        let pid = self.child.id() as i32;
        // SAFETY: signalling our own (not yet reaped) child by PID.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.exited = true;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.exited = true;
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        self.stop();
    }
}
