//! The `chorus` binary: server, local dev cluster, client and admin commands.

// Many small, short-lived buffers per request across threads: mimalloc keeps them in
// per-thread pages, where glibc's malloc showed up near the top of a profile.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod cli_batch;
mod cli_keys;
mod cli_show;
mod dev;

fn main() -> std::process::ExitCode {
    cli::main()
}
