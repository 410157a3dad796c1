//! The `minilab` binary: parse, dispatch, map errors to exit codes (2 bad input, 1 anything else,
//! 130 stopped by Ctrl-C).

use clap::Parser;
use minilab::cli::{Cli, Command};
use minilab::cmd;

/// Runs before Rust's runtime reopens closed standard descriptors on /dev/null, so that a closed
/// stdout (`minilab inspect >&-`) is still visible (see `report::console::record_closed_fds`).
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static RECORD_CLOSED_FDS: extern "C" fn() = {
    extern "C" fn record() {
        minilab::report::console::record_closed_fds();
    }
    record
};

fn main() {
    // Die quietly on a closed pipe (`minilab inspect | head`) like other Unix tools, instead of
    // panicking in println!.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // `minilab inspect >&-`: reopen closed standard descriptors on /dev/null so that no file
    // opened later takes their number; a closed stdout then fails the command's output (exit 1).
    minilab::report::console::guard_std_fds();
    // candle asks for its thread count on every CPU matmul and, without this variable, re-reads
    // /proc/cpuinfo each time (≈5 % of a decode step); pin its own default once, before any thread.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", candle_core::utils::get_num_threads().to_string());
    }
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let result = minilab::device::on_worker(|| {
        minilab::env_vars::check()?;
        match &cli.command {
            Command::Eval(a) => cmd::eval::run(a),
            Command::Inspect(a) => cmd::inspect::run(a),
            Command::Bench(a) => cmd::bench::run(a),
            Command::Sensitivity(a) => cmd::sensitivity::run(a),
            Command::Plot(a) => cmd::plot::run(a),
            Command::Export(a) => cmd::export::run(a),
            Command::Completions(a) => cmd::completions::run(a, <Cli as clap::CommandFactory>::command()),
        }
    });
    if let Err(e) = result {
        let msg = minilab::model::hub::redact(&minilab::error::one_line(&e.to_string()));
        if cmd::interrupt::requested() {
            // Ctrl-C: the message says how to resume; 130 = 128 + SIGINT, as shells report.
            minilab::report::console::note(&msg);
            std::process::exit(130);
        }
        // Not eprintln!: it panics when stderr fails (2>/dev/full).
        minilab::report::console::note(&format!("error: {msg}"));
        std::process::exit(e.exit_code());
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("minilab={level}")));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}
