//! `failover generate` (hidden; used by `cargo xtask package`): the man pages and shell
//! completions, generated from the clap definitions so that they never disagree with
//! `--help`.
use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;

/// Arguments of `failover generate`.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// Directory for the man pages (`failover.8`, `failover-SUBCOMMAND.8`).
    #[arg(long)]
    man: PathBuf,
    /// Directory for the completions (`failover.bash`, `_failover`, `failover.fish`).
    #[arg(long)]
    completions: PathBuf,
}

/// Writes the pages and the completions of `cmd`.
pub fn run(args: GenerateArgs, cmd: clap::Command) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.man).with_context(|| args.man.display().to_string())?;
    std::fs::create_dir_all(&args.completions)
        .with_context(|| args.completions.display().to_string())?;
    let cmd = cmd.version(env!("CARGO_PKG_VERSION"));
    let page = |c: clap::Command, file: String| -> anyhow::Result<()> {
        let mut out = Vec::new();
        clap_mangen::Man::new(c)
            .section("8")
            .manual("failover")
            .render(&mut out)?;
        let path = args.man.join(file);
        std::fs::write(&path, out).with_context(|| path.display().to_string())
    };
    page(cmd.clone(), "failover.8".into())?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // A page's command is named like its file (clap wants a static name: this runs
        // once, at packaging).
        let name: &'static str = Box::leak(format!("failover-{}", sub.get_name()).into_boxed_str());
        page(sub.clone().name(name), format!("{name}.8"))?;
    }
    for (shell, file) in [
        (clap_complete::Shell::Bash, "failover.bash"),
        (clap_complete::Shell::Zsh, "_failover"),
        (clap_complete::Shell::Fish, "failover.fish"),
    ] {
        let mut c = cmd.clone();
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut c, "failover", &mut out);
        let path = args.completions.join(file);
        std::fs::write(&path, out).with_context(|| path.display().to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}
