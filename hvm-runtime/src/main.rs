//! The `pvio` command: parses the command line and hands it to the library.

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = pvio_hvm_runtime::cli::parse();
    let level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // vfio-ioctls warns on every device open about IRQ indexes a device does
    // not have; only its errors matter to a user.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},vfio_ioctls=error")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match pvio_hvm_runtime::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pvio: {}", pvio_hvm_runtime::cli::error_line(&e));
            ExitCode::FAILURE
        }
    }
}
