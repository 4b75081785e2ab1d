//! `shmpool-broker`: the `shmpool broker` command as its own binary (see `shmpool_farm::cli`).

use clap::Parser;
use shmpool_farm::cli::BrokerArgs;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "shmpool-broker", version)]
struct Cli {
    #[command(flatten)]
    args: BrokerArgs,
}

fn main() -> ExitCode {
    match shmpool_farm::cli::broker(&Cli::parse().args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmpool broker: {e}");
            ExitCode::FAILURE
        }
    }
}
