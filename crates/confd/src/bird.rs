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

/// One BGP protocol of BIRD's `show protocols`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's address (from the protocol's name).
    pub address: String,
    /// node-to-node mesh, global or node specific.
    pub kind: &'static str,
    /// BIRD's protocol state (up, start, ...).
    pub state: String,
    /// Since when.
    pub since: String,
    /// The BGP state and BIRD's detail.
    pub info: String,
}

/// A protocol line (`name proto table state since info...`) as a Calico peer, if it is one.
fn peer_of(line: &str, separator: &str) -> Option<Peer> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    if cols.len() < 6 || cols[1] != "BGP" {
        return None;
    }
    let (prefix, address) = cols[0].split_once('_')?;
    let kind = match prefix {
        "Mesh" => "node-to-node mesh",
        "Global" => "global",
        "Node" => "node specific",
        _ => return None,
    };
    Some(Peer {
        address: address.replace('_', separator),
        kind,
        state: cols[3].to_owned(),
        since: cols[4].to_owned(),
        info: cols[5..].join(" "),
    })
}

/// BIRD's BGP sessions with Calico's names (`Mesh_`, `Global_`, `Node_`)
/// on `socket`, from `show protocols`.
pub fn peers(socket: &Path, v6: bool) -> Result<Vec<Peer>, BirdError> {
    let name = socket.display().to_string();
    let reply = request(socket, "show protocols")?;
    let separator = if v6 { ":" } else { "." };
    let mut peers = Vec::new();
    for line in reply {
        // 2002 the table heading, 1002 the rows, 0000 the end.
        match line.code {
            0 => {}
            2002 => {
                let heading: Vec<&str> = line.text.split_whitespace().collect();
                if heading != ["name", "proto", "table", "state", "since", "info"] {
                    return Err(BirdError::Protocol {
                        socket: name,
                        line: line.text,
                    });
                }
            }
            1002 => peers.extend(peer_of(&line.text, separator)),
            _ => {
                return Err(BirdError::Protocol {
                    socket: name,
                    line: line.text,
                });
            }
        }
    }
    Ok(peers)
}

/// Upstream's `-bird-ready`: BIRD answers and every Calico BGP session is
/// established. The error names the sessions that are not.
pub fn established(socket: &Path, v6: bool) -> Result<(), String> {
    let peers = peers(socket, v6).map_err(|e| e.to_string())?;
    let down: Vec<String> = peers
        .iter()
        .filter(|p| !p.info.starts_with("Established"))
        .map(|p| format!("{} ({} {})", p.address, p.state, p.info))
        .collect();
    if down.is_empty() {
        Ok(())
    } else {
        Err(format!("BGP not established with {}", down.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_peers_as_upstream_parses_them() {
        let p = peer_of(
            "Mesh_10_0_0_2 BGP      master   up     15:36:23    Established   ",
            ".",
        )
        .unwrap();
        assert_eq!(p.address, "10.0.0.2");
        assert_eq!(p.kind, "node-to-node mesh");
        assert_eq!((p.state.as_str(), p.info.as_str()), ("up", "Established"));
        let p = peer_of(
            "Node_fd00__2 BGP master start 15:36:23 Connect Socket: Connection refused",
            ":",
        )
        .unwrap();
        assert_eq!(p.address, "fd00::2");
        assert_eq!(p.info, "Connect Socket: Connection refused");
        assert!(peer_of("device1  Device   master   up     15:36:18", ".").is_none());
        assert!(peer_of("Other_1 BGP master up 15:36:23 Established", ".").is_none());
    }

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
