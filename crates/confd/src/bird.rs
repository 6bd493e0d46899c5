//! BIRD's control socket (`bird.ctl`, `bird6.ctl`): one command, its reply.
//!
//! BIRD answers in lines of a four-digit code and a separator: `-` when
//! more lines of that code follow, a space on the last one; a line starting
//! with a space continues the previous code. A reply ends with a
//! space-separated line; codes 8xxx and 9xxx are errors.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long BIRD may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// One line of a reply: its code (the previous line's for a continuation)
/// and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyLine {
    /// BIRD's four-digit code.
    pub code: u16,
    /// The text after the code.
    pub text: String,
}

/// Why BIRD could not be asked, or said no.
#[derive(Debug, thiserror::Error)]
pub enum BirdError {
    /// The socket could not be used.
    #[error("talking to BIRD on {socket}: {source}")]
    Io {
        /// The control socket.
        socket: String,
        /// The failure.
        source: std::io::Error,
    },
    /// BIRD's answer is not in its protocol.
    #[error("reading BIRD's answer on {socket}: unexpected line {line:?}")]
    Protocol {
        /// The control socket.
        socket: String,
        /// The line.
        line: String,
    },
    /// BIRD answered with an error code.
    #[error("BIRD on {socket} refused {command:?}: {message}")]
    Refused {
        /// The control socket.
        socket: String,
        /// The command.
        command: String,
        /// BIRD's error lines.
        message: String,
    },
}

/// Sends `command` to BIRD on `socket` and returns its reply (the greeting
/// left out).
pub fn request(socket: &Path, command: &str) -> Result<Vec<ReplyLine>, BirdError> {
    let name = socket.display().to_string();
    let io = |source| BirdError::Io {
        socket: name.clone(),
        source,
    };
    let mut conn = UnixStream::connect(socket).map_err(io)?;
    conn.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    let mut reader = BufReader::new(conn.try_clone().map_err(io)?);
    // The greeting (`0001 BIRD 1.6.8 ready.`) is a reply of its own.
    read_reply(&mut reader, &name)?;
    conn.write_all(format!("{command}\n").as_bytes())
        .map_err(io)?;
    let reply = read_reply(&mut reader, &name)?;
    let errors: Vec<&str> = reply
        .iter()
        .filter(|l| l.code >= 8000)
        .map(|l| l.text.as_str())
        .collect();
    if !errors.is_empty() {
        return Err(BirdError::Refused {
            socket: name,
            command: command.to_owned(),
            message: errors.join("; "),
        });
    }
    Ok(reply)
}

fn read_reply(reader: &mut impl BufRead, socket: &str) -> Result<Vec<ReplyLine>, BirdError> {
    let mut out = Vec::new();
    let mut code = 0;
    loop {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .map_err(|source| BirdError::Io {
                socket: socket.to_owned(),
                source,
            })?;
        let protocol = |line: &str| BirdError::Protocol {
            socket: socket.to_owned(),
            line: line.to_owned(),
        };
        if n == 0 {
            return Err(protocol("(end of stream)"));
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if let Some(rest) = line.strip_prefix(' ') {
            out.push(ReplyLine {
                code,
                text: rest.to_owned(),
            });
            continue;
        }
        let (digits, sep) = (line.get(..4), line.get(4..5));
        code = digits
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| protocol(line))?;
        out.push(ReplyLine {
            code,
            text: line.get(5..).unwrap_or_default().to_owned(),
        });
        match sep {
            Some("-") => {}
            Some(" ") | None => return Ok(out),
            _ => return Err(protocol(line)),
        }
    }
}

/// Asks BIRD to read its configuration again (`configure`); BIRD keeps the
/// running one when the new one does not parse, and says why.
pub fn configure(socket: &Path) -> Result<String, BirdError> {
    let reply = request(socket, "configure")?;
    Ok(reply.last().map(|l| l.text.clone()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_end_on_a_space_separated_line() {
        let text = "0002-Reading configuration from bird.cfg\n0003 Reconfigured\n0001 next\n";
        let mut r = BufReader::new(text.as_bytes());
        let reply = read_reply(&mut r, "s").unwrap();
        assert_eq!(reply.len(), 2);
        assert_eq!(
            reply[1],
            ReplyLine {
                code: 3,
                text: "Reconfigured".into()
            }
        );
        let table = "2002-name proto\n1002-device1 Device\n kernel1 Kernel\n0000 \n";
        let reply = read_reply(&mut BufReader::new(table.as_bytes()), "s").unwrap();
        assert_eq!(
            reply.iter().map(|l| l.code).collect::<Vec<_>>(),
            [2002, 1002, 1002, 0]
        );
        assert!(read_reply(&mut BufReader::new("garbage\n".as_bytes()), "s").is_err());
        assert!(read_reply(&mut BufReader::new("0002-cut".as_bytes()), "s").is_err());
    }
}
