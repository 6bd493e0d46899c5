//! `calicoctl node diags` and `calicoctl cluster diags`: build a bundle, write it.

use calico_datastore::OpenMode;

use crate::cli::{ClusterArgs, ClusterCommand};
use crate::commands::{CommandError, Context};
use crate::diags::Bundle;

/// Run `calicoctl cluster ...`.
pub fn cluster(args: &ClusterArgs, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    match &args.command {
        ClusterCommand::Diags(a) => {
            let ds = (ctx.open)(OpenMode::Existing)?;
            let bundle = crate::diags::cluster(
                ds.as_ref(),
                "as configured for calicoctl",
                crate::commands::VERSION,
            );
            write(&bundle, a.output.as_deref(), "calico-cluster-diags", ctx)
        }
    }
}

/// Write `bundle` to `output` (`-`: standard output; none: `<stem>-<time>.tar.gz` here).
pub fn write(
    bundle: &Bundle,
    output: Option<&str>,
    stem: &str,
    ctx: &mut Context<'_>,
) -> Result<(), CommandError> {
    if output == Some("-") {
        return bundle
            .write_tar_gz(&mut *ctx.out)
            .map_err(|e| CommandError::new(format!("writing the bundle: {e}")));
    }
    let path = match output {
        Some(p) => p.to_owned(),
        None => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("{stem}-{secs}.tar.gz")
        }
    };
    // Written beside and renamed into place: a failed run leaves no half bundle.
    let tmp = format!("{path}.partial");
    let result = std::fs::File::create(&tmp).and_then(|f| {
        let mut w = std::io::BufWriter::new(f);
        bundle.write_tar_gz(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &path)
    });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(CommandError::new(format!("writing the bundle {path}: {e}")));
    }
    writeln!(
        ctx.out,
        "Diagnostics bundle written to {path} ({} files; secrets redacted)",
        bundle.paths().count()
    )
    .map_err(|e| CommandError::new(format!("writing output: {e}")))
}
