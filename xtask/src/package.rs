//! `cargo xtask package`: the Debian package, `target/debian/failover_*.deb`, with cargo-deb.
//!
//! Before cargo-deb runs: the release build, the man pages and completions from the clap
//! definitions (`failover generate`), `failover.toml(5)` from docs/configuration.md, all
//! pages gzipped, into `target/debian/gen` (the assets of `[package.metadata.deb]`).
use std::{fmt::Write as _, path::PathBuf, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::{build, step::Runner};

/// Builds the package; returns its path.
pub fn run(runner: &Runner) -> Result<PathBuf> {
    crate::setup::run(runner)?;
    let artifacts = build::run(runner, build::Profile::Release)?;
    let gen = crate::target_dir().join("debian").join("gen");
    let _ = std::fs::remove_dir_all(&gen);
    let (man, completions) = (gen.join("man"), gen.join("completions"));
    let mut generate = Command::new(&artifacts.failover);
    generate
        .arg("generate")
        .arg("--man")
        .arg(&man)
        .arg("--completions")
        .arg(&completions);
    runner
        .step("package: man pages and completions")
        .run([generate])?;
    let md = std::fs::read_to_string(crate::root().join("docs/configuration.md"))
        .context("docs/configuration.md")?;
    std::fs::write(man.join("failover.toml.5"), markdown_to_man(&md)).context("failover.toml.5")?;
    let mut gzip = Command::new("gzip");
    gzip.args(["-9", "-n", "-f"]);
    for page in std::fs::read_dir(&man)? {
        gzip.arg(page?.path());
    }
    runner.step("package: gzip the pages").run([gzip])?;
    let out = crate::target_dir().join("debian");
    let mut deb = crate::cargo();
    deb.args(["deb", "-p", "failover-user", "--no-build", "--output"])
        .arg(&out);
    runner.step("package: cargo deb").run([deb])?;
    let found: Vec<PathBuf> = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("failover_") && n.ends_with(".deb"))
        })
        .collect();
    match found.as_slice() {
        [one] => {
            eprintln!("xtask: package: {}", one.display());
            Ok(one.clone())
        }
        [] => bail!(
            "cargo deb ran but left no failover_*.deb in {}",
            out.display()
        ),
        more => bail!(
            "several packages in {}: {more:?}; remove the old ones",
            out.display()
        ),
    }
}

/// Escapes text for roff: backslashes, and a leading `.` or `'` (a request otherwise).
fn roff_text(s: &str) -> String {
    let s = s.replace('\\', "\\e");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// Inline markdown to roff: `code` bold, links as their text, `|` escapes undone.
fn inline(s: &str) -> String {
    let mut out = String::new();
    let mut bold = false;
    let mut rest = s.replace("\\|", "|");
    // [text](target) -> text
    while let Some(open) = rest.find('[') {
        let Some(mid) = rest[open..].find("](").map(|i| open + i) else {
            break;
        };
        let Some(close) = rest[mid..].find(')').map(|i| mid + i) else {
            break;
        };
        rest = format!(
            "{}{}{}",
            &rest[..open],
            &rest[open + 1..mid],
            &rest[close + 1..]
        );
    }
    for c in roff_text(&rest).chars() {
        if c == '`' {
            out.push_str(if bold { "\\fR" } else { "\\fB" });
            bold = !bold;
        } else {
            out.push(c);
        }
    }
    if bold {
        out.push_str("\\fR");
    }
    out
}

/// docs/configuration.md as `failover.toml(5)`: headings as sections, tables as tagged
/// paragraphs (the first column the tag), code blocks verbatim, lists as bullets.
pub fn markdown_to_man(md: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        ".TH FAILOVER.TOML 5 \"\" \"failover {}\" \"File formats\"",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        out,
        ".SH NAME\nfailover.toml \\- configuration of the failover daemon"
    );
    let mut in_code = false;
    let mut header: Vec<String> = Vec::new();
    for line in md.lines() {
        if line.starts_with("```") {
            out.push_str(if in_code { ".fi\n.RE\n" } else { ".RS\n.nf\n" });
            in_code = !in_code;
            continue;
        }
        if in_code {
            let _ = writeln!(out, "{}", roff_text(line));
            continue;
        }
        let t = line.trim();
        if let Some(h) = t.strip_prefix("### ") {
            let _ = writeln!(
                out,
                ".SS {}",
                inline(h).replace("\\fB", "").replace("\\fR", "")
            );
        } else if let Some(h) = t.strip_prefix("## ") {
            let plain = h.replace('`', "");
            let _ = writeln!(out, ".SH \"{}\"", roff_text(&plain.to_uppercase()));
        } else if t.starts_with("# ") {
            out.push_str(".SH DESCRIPTION\n");
        } else if t.starts_with('|') {
            let cells: Vec<String> = t
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect();
            if cells
                .iter()
                .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
            {
                continue; // the separator row
            }
            if header.is_empty() {
                header = cells;
                continue;
            }
            let _ = writeln!(out, ".TP\n{}", inline(&cells[0]));
            let rest: Vec<String> = cells[1..]
                .iter()
                .zip(header.iter().skip(1))
                .filter(|(c, _)| !c.is_empty() && c.as_str() != "-")
                .map(|(c, h)| {
                    if h == "default" {
                        format!("(default: {})", inline(c))
                    } else {
                        inline(c)
                    }
                })
                .collect();
            let _ = writeln!(out, "{}", rest.join(" "));
        } else if t.is_empty() {
            header.clear();
            out.push_str(".PP\n");
        } else if let Some(item) = t.strip_prefix("- ") {
            let _ = writeln!(out, ".IP \\(bu 2\n{}", inline(item));
        } else {
            let _ = writeln!(out, "{}", inline(t));
        }
    }
    out.push_str(".SH SEE ALSO\nfailover(8), failover-run(8), failover-check-config(8)\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_sections_tagged_paragraphs_and_verbatim_code() {
        let man = markdown_to_man(
            "# Configuration\n\nIntro with `code` and [a link](x.md).\n\n## `[boot]` (required)\n\n\
             | field | default | meaning |\n|---|---|---|\n| `retry` | `\"1s\"` | first delay \\| doubling |\n\n\
             ```toml\n.starts_with_a_dot = 1\n```\n- a bullet\n",
        );
        for want in [
            ".SH DESCRIPTION",
            "Intro with \\fBcode\\fR and a link.",
            ".SH \"[BOOT] (REQUIRED)\"",
            ".TP\n\\fBretry\\fR\n(default: \\fB\"1s\"\\fR) first delay | doubling",
            ".nf\n\\&.starts_with_a_dot = 1\n.fi",
            ".IP \\(bu 2\na bullet",
        ] {
            assert!(man.contains(want), "{want:?} in\n{man}");
        }
    }
}
