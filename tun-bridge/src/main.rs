//! `tun-bridge` binary: parses the command line and dispatches.

use std::io;
use std::process::ExitCode;

use clap::Parser;
use tun_bridge::cli::{Cli, Command};
use tun_bridge::{check, doctor, runtime};

fn exit(r: io::Result<bool>) -> ExitCode {
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tun-bridge: {e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(io::stderr)
        .init();
    let result = match cli.command {
        Command::Check(a) => return exit(check::run(&a, &mut io::stdout(), &mut io::stderr())),
        Command::Doctor(a) => return exit(doctor::run(&a.interfaces, &mut io::stdout())),
        Command::Up(a) => runtime::up(a),
        Command::Status(a) => runtime::status(a),
        Command::Demo(a) => runtime::demo(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tun-bridge: {e}");
            ExitCode::from(1)
        }
    }
}
