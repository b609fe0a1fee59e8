//! The `faultline` binary: flags → config → logging → runtime → `app::run` → exit code.

use clap::Parser;
use faultline::config::{self, Cli, Command};
use faultline::telemetry::{self, metrics::Metrics};

// Decoding OTLP is dominated by allocation; mimalloc roughly doubles it (ECOSYSTEM.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::CheckConfig(check)) => return check_config(&check.file),
        Some(Command::Analyze(args)) => {
            return faultline::offline::run(
                args,
                &mut std::io::stdin().lock(),
                // `run` flushes; unbuffered, stdout would write each line on its own.
                &mut std::io::BufWriter::new(std::io::stdout().lock()),
                &mut std::io::stderr(),
            );
        }
        None => cli.serve,
    };
    let config = match config::load(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("faultline: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Err(e) = telemetry::init_logging(&config.log_level) {
        eprintln!("faultline: {e:#}");
        return std::process::ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("faultline: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let metrics = Metrics::default();
    let served = runtime.block_on(async {
        let listeners = faultline::app::Listeners::bind(&config).await?;
        faultline::app::run(config, metrics, listeners, shutdown_signal()).await
    });
    match served {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "faultline failed");
            eprintln!("faultline: {e:#}");
            // A TLS or token file that cannot be used is a bad option, like a bad flag.
            if e.chain().any(|c| {
                c.is::<config::ConfigError>() || c.is::<faultline::forward::client::ClientError>()
            }) {
                return std::process::ExitCode::from(2);
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// `faultline check-config FILE`: exit 0 when the service would start with this file,
/// 2 (as start-up does) with its message when it would not.
fn check_config(file: &std::path::Path) -> std::process::ExitCode {
    match config::check_file(file) {
        Ok(_) => {
            println!("{}: ok", file.display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("faultline: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
