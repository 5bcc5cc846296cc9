use clap::Parser;

/// mimalloc instead of the system allocator: the loader allocates and frees small
/// rows by the million, and glibc's malloc took a quarter of its CPU at TPC-H SF1
/// (`perf`, bench/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = dvault::cli::Cli::parse();
    dvault::cli::init_tracing(&cli);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(dvault::cli::run(cli))
}
