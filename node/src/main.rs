//! The `chorus` binary: server, local dev cluster, client and admin commands.

mod bench;
mod cli;
mod dev;

fn main() -> std::process::ExitCode {
    cli::main()
}
