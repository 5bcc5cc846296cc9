use clap::Parser;

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
