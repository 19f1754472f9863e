//! `tun-bridge` binary: parses the command line and dispatches.

use std::io;
use std::process::ExitCode;

use clap::Parser;
use tun_bridge::cli::{Cli, Command};
use tun_bridge::{check, doctor, logging, runtime};

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
    let log_format = match &cli.command {
        Command::Up(a) => a.log_format,
        _ => logging::LogFormat::Text,
    };
    logging::init(log_format);
    let result = match cli.command {
        Command::Check(a) => return exit(check::run(&a, &mut io::stdout(), &mut io::stderr())),
        Command::Doctor(a) => return exit(doctor::run(&a.interfaces, &mut io::stdout())),
        Command::Up(a) => runtime::up(a),
        Command::Status(a) => runtime::status(a),
        Command::Initiate(a) => runtime::initiate(a),
        Command::Terminate(a) => runtime::terminate(a),
        Command::Reload(a) => runtime::reload(a),
        Command::Demo(a) => runtime::demo(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if log_format == logging::LogFormat::Json {
                // Every stderr line stays a JSON object.
                tracing::error!("tun-bridge: {e}");
            } else {
                eprintln!("tun-bridge: {e}");
            }
            ExitCode::from(1)
        }
    }
}
