//! `minilab completions <shell>`: a completion script generated from the clap definition.

use crate::error::Result;
use clap::Args;
use clap_complete::Shell;

/// `minilab completions` flags.
#[derive(Debug, Args, Clone)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, powershell or elvish.
    #[arg(value_name = "SHELL")]
    pub shell: Shell,
}

/// Prints the completion script of `cmd` (the whole command line, `Cli::command()`) for
/// `args.shell` on stdout.
pub fn run(args: &CompletionsArgs, mut cmd: clap::Command) -> Result<()> {
    // Into memory first: clap_complete panics when its writer fails (`> /dev/full`).
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "minilab", &mut out);
    crate::report::console::print_bytes(&out)
}
