//! Entry points of the `up`, `status` and `demo` subcommands.
//!
//! This file only loads and validates the configuration; the integrator
//! replaces it with the real runtime (TUN, sockets, IKE, control socket).

use crate::cli::{DemoArgs, StatusArgs, UpArgs};
use crate::config;

/// Error type of the runtime entry points.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

const NOT_LINKED: &str = "runtime not linked yet";

/// `tun-bridge up`: loads and validates the configuration (a configuration
/// error never touches the network), then reports that no runtime is linked.
pub fn up(args: UpArgs) -> Result<(), Error> {
    let loaded = config::load(&args.config, &args.secrets)?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    for name in &args.conns {
        if loaded.config.conn(name).is_none() {
            return Err(format!(
                "--conn {name}: no such connection in {}",
                args.config.display()
            )
            .into());
        }
    }
    Err(NOT_LINKED.into())
}

/// `tun-bridge status`.
pub fn status(_args: StatusArgs) -> Result<(), Error> {
    Err(NOT_LINKED.into())
}

/// `tun-bridge demo`.
pub fn demo(_args: DemoArgs) -> Result<(), Error> {
    crate::demo::run().map_err(Into::into)
}
