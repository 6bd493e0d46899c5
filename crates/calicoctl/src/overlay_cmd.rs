//! The `migrate-overlay` command around [`crate::overlay`]: read, report, diff or write.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::MigrateOverlayArgs;
use crate::commands::{CommandError, Context};
use crate::overlay::{Networks, migrate_text};

/// Exit code: something would change (dry run).
const WOULD_CHANGE: i32 = 1;
/// Exit code: a file could not be read, parsed or written.
const TROUBLE: i32 = 2;

/// Run `calicoctl migrate-overlay`.
pub fn run(args: &MigrateOverlayArgs, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    let nets = Networks {
        from: args.from.clone(),
        to: args.to.clone(),
    };
    let io = |e: std::io::Error| CommandError::with_code(format!("writing output: {e}"), TROUBLE);
    let mut changed = Vec::new();
    let mut troubles = Vec::new();
    for path in &args.files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                troubles.push(format!("{}: {e}; left untouched", path.display()));
                continue;
            }
        };
        let report = match migrate_text(path, &text, &nets) {
            Ok(r) => r,
            Err(e) => {
                troubles.push(e.to_string());
                continue;
            }
        };
        for line in &report.changes {
            writeln!(ctx.out, "{}: {line}", path.display()).map_err(io)?;
        }
        for line in &report.untouched {
            writeln!(ctx.out, "{}: {line}; left as it is", path.display()).map_err(io)?;
        }
        let Some(new) = report.new_text.filter(|n| *n != text) else {
            continue;
        };
        if args.write {
            match write_with_backup(path, &text, &new) {
                Ok(backup) => writeln!(
                    ctx.out,
                    "{}: written (original kept as {})",
                    path.display(),
                    backup.display()
                )
                .map_err(io)?,
                Err(e) => {
                    troubles.push(e);
                    continue;
                }
            }
        } else {
            write!(ctx.out, "{}", crate::overlay::diff(path, &text, &new)).map_err(io)?;
        }
        changed.push(path.display().to_string());
    }
    let verb = if args.write {
        "changed"
    } else {
        "would change"
    };
    writeln!(
        ctx.out,
        "Summary: {} file(s) {verb}, {} left untouched because of a problem",
        changed.len(),
        troubles.len()
    )
    .map_err(io)?;
    if !troubles.is_empty() {
        return Err(CommandError::with_code(troubles.join("\n"), TROUBLE));
    }
    if !args.write && !changed.is_empty() {
        return Err(CommandError::with_code(
            format!(
                "{} file(s) would change; run again with --write to change them",
                changed.len()
            ),
            WOULD_CHANGE,
        ));
    }
    Ok(())
}

/// Write `new` over `path` atomically (a temporary file beside it, then a rename), after
/// keeping the original as `FILE.bak` (or `FILE.bak.N` when that exists). The backup path.
fn write_with_backup(path: &Path, old: &str, new: &str) -> Result<PathBuf, String> {
    let fail =
        |what: &str, e: std::io::Error| format!("{}: {what}: {e}; left untouched", path.display());
    let mut backup = PathBuf::from(format!("{}.bak", path.display()));
    let mut n = 1;
    while backup.exists() {
        backup = PathBuf::from(format!("{}.bak.{n}", path.display()));
        n += 1;
    }
    std::fs::write(&backup, old).map_err(|e| fail("keeping the original", e))?;
    let tmp = PathBuf::from(format!("{}.migrating", path.display()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(new.as_bytes())?;
        f.sync_all()?;
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("writing", e));
    }
    Ok(backup)
}
