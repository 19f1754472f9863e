//! Entry points of the `up`, `status` and `demo` subcommands: `up` turns
//! the configuration into plans, then hands them to the tunnel engine
//! ([`crate::engine`]) inside the IO shell ([`crate::shell`]).
//!
//! * [`plan`]: validated configuration → per-connection plans (addresses,
//!   PSKs, ike-lite peer configs, TUN names/MTUs, routes, failover groups).
//! * [`keylog`]: `--log-keys` in Wireshark formats.

pub mod keylog;
pub mod plan;

use std::time::Duration;

use tracing::info;

use crate::cli::{DemoArgs, StatusArgs, UpArgs};
use crate::config;
use crate::control::{self, ControlServer};
use crate::sys::poll::{Poller, SignalFd};

/// Error type of the runtime entry points.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// `tun-bridge up`: loads and validates the configuration (a configuration
/// error never touches the system), plans the selected connections, then
/// brings them up and runs until SIGTERM/SIGINT.
pub fn up(args: UpArgs) -> Result<(), Error> {
    let loaded = config::load(&args.config, &args.secrets)?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    let cfg = &loaded.config;
    let selected = plan::select_conns(cfg, &args.conns)
        .map_err(|e| format!("{e} (in {})", args.config.display()))?;

    // From here on the system is touched.
    let mut plans = Vec::with_capacity(selected.len());
    for (c, mode) in selected {
        let hint = c.local.ip();
        let remote =
            plan::resolve_remote(&c.remote, hint).map_err(|e| format!("conn {}: {e}", c.name))?;
        // config refuses left=%defaultroute with right=%any.
        let local = match c.local.ip() {
            Some(ip) => ip,
            None => plan::resolve_local(remote)
                .map_err(|e| format!("conn {}: no route to {remote}: {e}", c.name))?,
        };
        if c.local.ip().is_none() {
            info!(conn = %c.name, %local, "left=%defaultroute resolved");
        }
        let raw_esp = true; // decided per socket in Gateway::start
        plans.push(
            plan::plan_conn(c, mode, local, remote, &cfg.secrets, raw_esp)
                .map_err(|e| format!("conn {}: {e}", c.name))?,
        );
    }
    let groups = plan::failover_groups(&plans);
    let keylog = match &args.log_keys {
        Some(p) => {
            let (esp, ike) = keylog::paths(p);
            tracing::warn!(esp = %esp.display(), ike = %ike.display(), "--log-keys: writing ESP and IKE keys");
            Some(keylog::KeyLog::open(p).map_err(|e| format!("--log-keys {}: {e}", p.display()))?)
        }
        None => None,
    };
    // Block the signals before anything else could spawn threads.
    let signals = SignalFd::new(&[libc::SIGTERM, libc::SIGINT])?;
    let mut poller = Poller::new(256)?;
    let mut control = ControlServer::bind(&args.control)
        .map_err(|e| format!("control socket {}: {e}", args.control.display()))?;
    let engine = crate::engine::EngineOptions {
        failback: args.failback,
        ike: ike_lite::Config {
            export_ike_keys: keylog.is_some(),
            ..ike_lite::Config::default()
        },
        ike_rng: Box::new(rand_core::OsRng),
        rng: Box::new(rand_core::OsRng),
    };
    let mut shell = crate::shell::Shell::start(
        plans,
        groups,
        crate::shell::StartOptions { engine, keylog },
        &poller,
    )?;
    info!(control = %args.control.display(), "up");
    shell.run(&mut poller, &signals, &mut control)?;
    info!("stopped");
    Ok(())
}

/// `tun-bridge status [--json]`: asks a running `up` over its control socket.
pub fn status(args: StatusArgs) -> Result<(), Error> {
    let s = control::status_text(&args.control, args.json, Duration::from_secs(5))?;
    print!("{s}");
    Ok(())
}

/// `tun-bridge demo`: the self-contained two-site tunnel of `crate::demo`.
#[cfg(feature = "demo")]
pub fn demo(args: DemoArgs) -> Result<(), Error> {
    if args.bgp {
        let exe = std::env::current_exe().map_err(crate::demo::DemoError::CurrentExe)?;
        return crate::demo_bgp::run_with(&exe).map_err(Into::into);
    }
    crate::demo::run().map_err(Into::into)
}

/// `tun-bridge demo` in a build without the `demo` cargo feature: an error
/// saying how to get it.
#[cfg(not(feature = "demo"))]
pub fn demo(_args: DemoArgs) -> Result<(), Error> {
    Err("this tun-bridge was built without the `demo` feature \
         (cargo build -p tun-bridge --features demo)"
        .into())
}
