//! The operator's requests on the control socket, as the IO shell serves
//! them: `status`, `initiate NAME` and `terminate NAME` (the engine's
//! [`Command::Up`] / [`Command::Down`]), and `reload` (see `reload`).

use std::time::Instant;

use tracing::{info, warn};

use super::Shell;
use crate::control::{Request, Response};
use crate::engine::{Command, TunnelId};
use crate::sys::poll::Poller;

impl Shell {
    /// Answers one control request.
    pub(super) fn on_request(&mut self, now: Instant, req: &Request, poller: &Poller) -> Response {
        match req {
            Request::Status => Response::status(self.report(now)),
            Request::Initiate { name } => match self.named(name) {
                Ok(id) => {
                    info!(conn = %name, "initiate requested over the control socket");
                    self.engine.handle_command(now, Command::Up(id));
                    Response::done(format!("initiating {name}"))
                }
                Err(e) => Response::error(e),
            },
            Request::Terminate { name } => match self.named(name) {
                Ok(id) => {
                    info!(conn = %name, "terminate requested over the control socket");
                    self.engine.handle_command(now, Command::Down(id));
                    Response::done(format!(
                        "terminating {name} (kept down until initiate or reload)"
                    ))
                }
                Err(e) => Response::error(e),
            },
            Request::Reload => match self.reload(now, poller) {
                Ok(report) => Response::reloaded(report),
                Err(e) => {
                    for line in e.lines() {
                        warn!("reload over the control socket refused, nothing changed: {line}");
                    }
                    Response::error(e)
                }
            },
        }
    }

    /// The tunnel called `name`, or an error listing the known names.
    fn named(&self, name: &str) -> Result<TunnelId, String> {
        self.engine.tunnel_id(name).ok_or_else(|| {
            let known: Vec<&str> = self.engine.tunnel_names().collect();
            format!(
                "no connection named {name:?} (configured: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })
    }
}
