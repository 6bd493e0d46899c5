//! Logging for the calico-rs daemons (calico-node, calico-confd, the Docker plugin): one line
//! per event on standard error, with the time, the level, the component (the event's target:
//! `felix`, `calico-node`, `confd`, ...) and the message, as text or JSON. Levels take Calico's
//! names (`Trace`, `Debug`, `Info`, `Warning`, `Error`, `Fatal`, `Panic`, any case), as
//! `FELIX_LOGSEVERITYSCREEN` and `-l/--log-level` give them.

use tracing_subscriber::filter::LevelFilter;

/// A level or format that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Not one of Calico's level names.
    #[error("log level {0:?}: expected Trace, Debug, Info, Warning, Error, Fatal, Panic or None")]
    Level(String),
    /// Not `text` or `json`.
    #[error("log format {0:?}: expected text or json")]
    Format(String),
    /// A logger was already installed in this process.
    #[error("setting up logging: {0}")]
    Install(String),
}

/// The filter a Calico level name means. Fatal and Panic keep only errors (Rust has no level
/// above); None silences logging.
pub fn parse_level(name: &str) -> Result<LevelFilter, LogError> {
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "info" => LevelFilter::INFO,
        "warning" | "warn" => LevelFilter::WARN,
        "error" | "fatal" | "panic" => LevelFilter::ERROR,
        "none" | "off" => LevelFilter::OFF,
        _ => return Err(LogError::Level(name.to_owned())),
    })
}

/// Whether the lines are JSON (`json`) or text (`text`).
pub fn parse_json(format: &str) -> Result<bool, LogError> {
    match format.trim().to_ascii_lowercase().as_str() {
        "text" | "" => Ok(false),
        "json" => Ok(true),
        _ => Err(LogError::Format(format.to_owned())),
    }
}

/// Install the process's logger: events at `level` and above to standard error, one line
/// each, as text or JSON.
pub fn init(level: LevelFilter, json: bool) -> Result<(), LogError> {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(true)
        .with_ansi(false);
    let result = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| LogError::Install(e.to_string()))
}

/// [`init`] from a daemon's `--log-level` and `--log-format` arguments; a bad level or
/// format ends the process with the reason on stderr (there is no logger yet to say it).
pub fn init_or_exit(level: &str, format: &str) {
    let set = parse_level(level)
        .and_then(|l| parse_json(format).map(|j| (l, j)))
        .and_then(|(l, j)| init(l, j));
    if let Err(e) = set {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "{e}");
        std::process::exit(1);
    }
}

/// The logging flags of the daemons configured by `CALICO_LOG_LEVEL` (calico-confd, the
/// Docker plugin); calico-node's level comes from felix's `FELIX_LOGSEVERITYSCREEN`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log level: Trace, Debug, Info, Warning, Error, Fatal, Panic or None.
    #[arg(
        short = 'l',
        long = "log-level",
        env = "CALICO_LOG_LEVEL",
        default_value = "Info"
    )]
    pub log_level: String,
    /// Log lines as `text` or `json`.
    #[arg(long = "log-format", env = "CALICO_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

impl LogArgs {
    /// [`init_or_exit`] with these flags.
    pub fn init_or_exit(&self) {
        init_or_exit(&self.log_level, &self.log_format);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calico_level_names() {
        assert_eq!(parse_level("Info").unwrap(), LevelFilter::INFO);
        assert_eq!(parse_level("WARNING").unwrap(), LevelFilter::WARN);
        assert_eq!(parse_level("fatal").unwrap(), LevelFilter::ERROR);
        assert_eq!(parse_level("None").unwrap(), LevelFilter::OFF);
        assert!(
            parse_level("loud")
                .unwrap_err()
                .to_string()
                .contains("\"loud\"")
        );
        assert!(parse_json("json").unwrap());
        assert!(!parse_json("text").unwrap());
        assert!(parse_json("xml").is_err());
    }
}
