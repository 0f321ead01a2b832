//! `hookrunner completions SHELL` and `hookrunner man [1|5]`: the shell completion script and the
//! roff man pages, section 1 generated from the `Cli` definition so that it never drifts from the
//! real flags, section 5 from the config reference built into the binary.

use std::io::Write as _;
use std::process::ExitCode;

use clap::CommandFactory as _;
use clap_complete::Shell;
use clap_mangen::Man;

use crate::cli::Cli;

/// Prints the completion script for `shell`, e.g. `hookrunner completions bash > /etc/bash_completion.d/hookrunner`.
pub fn completions(shell: Shell) -> ExitCode {
    let mut command = Cli::command();
    let name = command.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    print(&script, "completion script")
}

/// Prints a man page as roff, e.g. `hookrunner man | man -l -`: section 1, the command line, or
/// section 5, the config file.
pub fn man(section: &str) -> ExitCode {
    if section == "5" {
        return print(crate::cli::roff::config_page().as_bytes(), "man page");
    }
    match man_page() {
        Ok(page) => print(&page, "man page"),
        Err(error) => {
            eprintln!("cannot render the man page: {error}");
            ExitCode::from(1)
        }
    }
}

/// One page for the whole program: clap_mangen's own page for a command with subcommands only
/// lists them and points at a `hookrunner-serve(1)` page per subcommand, which would have to be
/// installed separately. Here each subcommand gets a section of its own instead, with its
/// synopsis, description and options (environment variables included).
fn man_page() -> std::io::Result<Vec<u8>> {
    let mut command = Cli::command();
    command.build();
    let man = Man::new(command.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    for subcommand in command
        .get_subcommands()
        .filter(|subcommand| subcommand.get_name() != "help" && !subcommand.is_hide_set())
    {
        let man = Man::new(subcommand.clone());
        let mut section = Vec::new();
        man.render_synopsis_section(&mut section)?;
        man.render_description_section(&mut section)?;
        man.render_options_section(&mut section)?;
        writeln!(
            page,
            ".SH \"COMMAND: {}\"",
            subcommand.get_name().to_uppercase()
        )?;
        page.extend(demote_sections(&section));
    }
    man.render_version_section(&mut page)?;
    Ok(page)
}

/// Turns a rendered section into sub-sections (`.SH` into `.SS`) and drops the preamble roff
/// repeats at the start of every rendered piece, which the page already has once.
fn demote_sections(roff: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(roff.len());
    for line in roff.split_inclusive(|byte| *byte == b'\n') {
        if line.starts_with(b".ie \\n(.g .ds Aq") || line.starts_with(b".el .ds Aq") {
            continue;
        }
        match line.strip_prefix(b".SH ") {
            Some(heading) => {
                out.extend_from_slice(b".SS ");
                out.extend_from_slice(heading);
            }
            None => out.extend_from_slice(line),
        }
    }
    out
}

/// Writes `bytes` to stdout. A reader that stops early (`| head`) is not an error.
fn print(bytes: &[u8], what: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cannot write the {what}: {error}");
            ExitCode::from(1)
        }
    }
}
