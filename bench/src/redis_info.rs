//! A minimal blocking Redis client for the harness's own readings (`INFO memory`,
//! `INFO cpu`, `FLUSHALL`, `DBSIZE`): RESP2 over one TCP connection, no pipelining. What is
//! measured goes through Herald's registry client; this only looks at the server.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR …`.
    Error(String),
    /// `:n`.
    Int(i64),
    /// `$n` (None for the null bulk string).
    Bulk(Option<Vec<u8>>),
    /// `*n`.
    Array(Vec<Reply>),
}

/// One connection to a Redis server.
#[derive(Debug)]
pub struct RedisConn {
    reader: BufReader<TcpStream>,
}

/// The address of a `redis://HOST:PORT` URL (IP addresses only).
pub fn url_addr(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| format!("{url}: expected redis://IP:PORT"))?;
    rest.trim_end_matches('/')
        .parse()
        .map_err(|_| format!("{url}: expected redis://IP:PORT"))
}

impl RedisConn {
    /// Connects to `url` (`redis://IP:PORT`).
    pub fn connect(url: &str) -> Result<RedisConn, String> {
        let addr = url_addr(url)?;
        let err = |e: std::io::Error| format!("redis {addr}: {e}");
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(err)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(err)?;
        Ok(RedisConn {
            reader: BufReader::new(s),
        })
    }

    /// Sends one command and reads its reply (an error reply is an `Err`).
    pub fn command(&mut self, args: &[&str]) -> Result<Reply, String> {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req += &format!("${}\r\n{a}\r\n", a.len());
        }
        self.reader
            .get_mut()
            .write_all(req.as_bytes())
            .map_err(|e| format!("redis: {e}"))?;
        match read_reply(&mut self.reader)? {
            Reply::Error(e) => Err(format!("redis {}: {e}", args.join(" "))),
            r => Ok(r),
        }
    }

    /// `INFO <section>` as text.
    pub fn info(&mut self, section: &str) -> Result<String, String> {
        match self.command(&["INFO", section])? {
            Reply::Bulk(Some(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
            other => Err(format!("redis INFO {section}: unexpected {other:?}")),
        }
    }

    /// `used_memory` (bytes) from `INFO memory`.
    pub fn used_memory(&mut self) -> Result<u64, String> {
        let info = self.info("memory")?;
        info_field(&info, "used_memory")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| "INFO memory has no used_memory".to_string())
    }

    /// CPU seconds the server used so far (`used_cpu_sys + used_cpu_user` of `INFO cpu`).
    pub fn cpu_seconds(&mut self) -> Result<f64, String> {
        let info = self.info("cpu")?;
        let get = |k| {
            info_field(&info, k)
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| format!("INFO cpu has no {k}"))
        };
        Ok(get("used_cpu_sys")? + get("used_cpu_user")?)
    }
}

/// The value of `key` in `INFO` text (`key:value` lines).
pub fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

fn read_line(r: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    let n = r.read_line(&mut line).map_err(|e| format!("redis: {e}"))?;
    if n == 0 {
        return Err("redis closed the connection".into());
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads one reply (bounded: bulk strings up to 512 MiB, as Redis itself).
pub fn read_reply(r: &mut impl BufRead) -> Result<Reply, String> {
    let line = read_line(r)?;
    let (kind, rest) = line.split_at(line.len().min(1));
    let num = || {
        rest.parse::<i64>()
            .map_err(|_| format!("redis: bad reply line {line:?}"))
    };
    match kind {
        "+" => Ok(Reply::Simple(rest.to_string())),
        "-" => Ok(Reply::Error(rest.to_string())),
        ":" => Ok(Reply::Int(num()?)),
        "$" => {
            let n = num()?;
            if n < 0 {
                return Ok(Reply::Bulk(None));
            }
            if n > 512 << 20 {
                return Err(format!("redis: bulk string of {n} bytes"));
            }
            let mut buf = vec![0u8; n as usize + 2];
            std::io::Read::read_exact(r, &mut buf).map_err(|e| format!("redis: {e}"))?;
            buf.truncate(n as usize);
            Ok(Reply::Bulk(Some(buf)))
        }
        "*" => {
            let n = num()?;
            let mut v = Vec::new();
            for _ in 0..n.max(0) {
                v.push(read_reply(r)?);
            }
            Ok(Reply::Array(v))
        }
        _ => Err(format!("redis: bad reply line {line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_and_info_fields() {
        let mut input: &[u8] =
            b"+OK\r\n:42\r\n$11\r\nused_memory\r\n$-1\r\n*2\r\n:1\r\n-ERR no\r\n";
        assert_eq!(read_reply(&mut input), Ok(Reply::Simple("OK".into())));
        assert_eq!(read_reply(&mut input), Ok(Reply::Int(42)));
        assert_eq!(
            read_reply(&mut input),
            Ok(Reply::Bulk(Some(b"used_memory".to_vec())))
        );
        assert_eq!(read_reply(&mut input), Ok(Reply::Bulk(None)));
        assert_eq!(
            read_reply(&mut input),
            Ok(Reply::Array(vec![
                Reply::Int(1),
                Reply::Error("ERR no".into())
            ]))
        );
        let info = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n";
        assert_eq!(info_field(info, "used_memory"), Some("1048576"));
        assert_eq!(info_field(info, "used_memory_peak"), None);
        assert_eq!(
            url_addr("redis://127.0.0.1:6379").unwrap(),
            "127.0.0.1:6379".parse().unwrap()
        );
        assert!(url_addr("redis-cluster://127.0.0.1:1").is_err());
    }
}
