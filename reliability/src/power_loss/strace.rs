//! Recording a process's file system calls with strace (Debian's package) and reading them back.
//!
//! The process runs under `strace -f -yy -xx -s <huge>`: every traced call of every thread,
//! each file descriptor annotated with what it is (a path, or a TCP connection with both
//! ends), every string in full as `\xNN` escapes, so that the data written is in the trace.
//! A call interrupted by another thread's line (`<unfinished ...>` … `<... resumed>`) is joined
//! back into one [`Call`] that knows the line where it began and the line where it ended.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The calls traced: everything that creates, writes, syncs, renames or removes a file, the
/// socket reads that carry HTTP requests and the socket writes that carry their answers.
pub const TRACED: &str =
    "open,openat,creat,write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync,\
sync_file_range,syncfs,sync,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat,ftruncate,\
fallocate,recvfrom,sendto,sendmsg,close";

/// One system call, begun at line `start` of the trace and finished at line `end`.
#[derive(Debug, Clone)]
pub struct Call {
    pub pid: u32,
    pub name: String,
    /// The arguments, split at the top level, strings still quoted and escaped.
    pub args: Vec<String>,
    /// What it returned (`0`, `4096`, `7</path>`, `-1 ENOSPC (…)`).
    pub ret: String,
    pub start: usize,
    pub end: usize,
}

impl Call {
    /// The call failed (returned -1).
    pub fn failed(&self) -> bool {
        self.ret.starts_with('-')
    }

    /// The numeric return value, when there is one.
    pub fn ret_value(&self) -> Option<i64> {
        let head = self.ret.split(['<', ' ']).next()?;
        head.parse().ok()
    }

    /// What the file descriptor of argument `i` is (`/path`, `TCP:[a->b]`).
    pub fn fd_target(&self, i: usize) -> Option<String> {
        annotation(self.args.get(i)?)
    }

    /// The bytes of string argument `i`.
    pub fn bytes(&self, i: usize) -> Option<Vec<u8>> {
        unquote(self.args.get(i)?)
    }
}

/// The fd number of an annotated descriptor (`7</path>` → 7).
pub fn fd_number(token: &str) -> Option<i64> {
    token.split('<').next()?.trim().parse().ok()
}

/// The annotation of a descriptor (`7</tmp/x/db>` → `/tmp/x/db`), escapes decoded.
pub fn annotation(token: &str) -> Option<String> {
    let open = token.find('<')?;
    let close = token.rfind('>')?;
    (close > open).then(|| String::from_utf8_lossy(&unescape(&token[open + 1..close])).into_owned())
}

/// A quoted string argument's bytes (`"\x41\x42"` → `AB`); `None` if not a string or cut short.
pub fn unquote(token: &str) -> Option<Vec<u8>> {
    let t = token.trim();
    let inner = t.strip_prefix('"')?.strip_suffix('"')?;
    Some(unescape(inner))
}

/// Decodes strace's escapes (`\xNN`, `\n`, `\t`, `\\`, `\"`, octal).
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 4 + 1);
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b[i + 1] {
            b'x' if i + 3 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 4;
            }
            b'n' => {
                out.push(b'\n');
                i += 2;
            }
            b't' => {
                out.push(b'\t');
                i += 2;
            }
            b'r' => {
                out.push(b'\r');
                i += 2;
            }
            b'0'..=b'7' => {
                let mut n = 0u32;
                let mut j = i + 1;
                while j < b.len() && j < i + 4 && (b'0'..=b'7').contains(&b[j]) {
                    n = n * 8 + u32::from(b[j] - b'0');
                    j += 1;
                }
                out.push(n as u8);
                i = j;
            }
            other => {
                out.push(other);
                i += 2;
            }
        }
    }
    out
}

/// Splits an argument list at top-level commas (outside quotes, brackets and braces).
fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut quoted = false;
    let mut escaped = false;
    let mut cur = String::new();
    for c in s.chars() {
        if quoted {
            cur.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = false;
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                cur.push(c);
            }
            // Not `<`/`>`: a socket's annotation holds `->`; paths in annotations are escaped.
            '[' | '{' | '(' => {
                depth += 1;
                cur.push(c);
            }
            ']' | '}' | ')' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Splits `name(args) = ret` (a whole call) into its parts.
fn split_call(text: &str) -> Option<(String, String, String)> {
    let open = text.find('(')?;
    let name = text[..open].trim().to_string();
    // The last ") = " outside quotes ends the arguments.
    let rest = &text[open + 1..];
    let mut quoted = false;
    let mut escaped = false;
    let mut end = None;
    for (i, c) in rest.char_indices() {
        if quoted {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = false;
            }
            continue;
        }
        if c == '"' {
            quoted = true;
        } else if c == ')' && rest[i + 1..].trim_start().starts_with("= ") {
            // strace pads short calls so that return values line up: `)      = 0`.
            end = Some(i);
        }
    }
    let end = end?;
    let ret = rest[end + 1..].trim_start().strip_prefix("= ")?;
    Some((name, rest[..end].to_string(), ret.trim().to_string()))
}

/// Reads a trace written with `-f -o`: one [`Call`] per finished call, in order of their end.
pub fn parse(text: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    // Per thread: the call begun and not finished (name, text so far, start line).
    let mut open: HashMap<u32, (String, usize)> = HashMap::new();
    for (line_no, line) in text.lines().enumerate() {
        let line = line.trim_end();
        let (pid, rest) = match line.split_once(' ') {
            Some((p, r)) => match p.parse::<u32>() {
                Ok(p) => (p, r.trim_start()),
                Err(_) => continue,
            },
            None => continue,
        };
        if rest.starts_with("+++") || rest.starts_with("---") {
            continue;
        }
        let (whole, start) = if let Some(begun) = rest.strip_suffix(" <unfinished ...>") {
            open.insert(pid, (begun.to_string(), line_no));
            continue;
        } else if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((_, tail)) = resumed.split_once(" resumed>") else {
                continue;
            };
            let Some((begun, start)) = open.remove(&pid) else {
                continue;
            };
            (format!("{begun}{tail}"), start)
        } else {
            (rest.to_string(), line_no)
        };
        if let Some((name, args, ret)) = split_call(&whole) {
            calls.push(Call {
                pid,
                name,
                args: split_args(&args),
                ret,
                start,
                end: line_no,
            });
        }
    }
    calls
}

/// The strace command that records `program` into `out` (threads followed, only the traced
/// calls stop the process). With `slow_sync`, every `fsync` and `fdatasync` waits that long
/// before it begins: a slow disk, on which writers pile up behind each sync.
pub fn command(out: &Path, program: &Path, slow_sync: Option<Duration>) -> Command {
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "--seccomp-bpf", "-yy", "-xx", "-s", "67108864", "-e"])
        .arg(format!("trace={TRACED}"));
    if let Some(delay) = slow_sync {
        cmd.arg("-e").arg(format!(
            "inject=fsync,fdatasync:delay_enter={}",
            delay.as_micros()
        ));
    }
    cmd.arg("-o").arg(out).arg("--").arg(program);
    cmd
}

/// Whether strace can be run here; the error says how to get it.
pub fn available() -> Result<(), String> {
    match Command::new("strace").arg("-V").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "strace -V failed: {}",
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => Err(format!(
            "strace is missing ({e}): install Debian's strace package (.ci/install-strace.sh)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_calls_are_joined_and_escapes_decoded() {
        let trace =
            "10 pwrite64(7<\\x2f\\x64\\x62>, \"\\x41\\x2c\\x42\", 3, 4096 <unfinished ...>\n\
                     11 fsync(8<\\x2f\\x64>) = 0\n\
                     10 <... pwrite64 resumed>)     = 3\n\
                     11 sendto(5<TCP:[127.0.0.1:1->127.0.0.1:2]>, \"\\x48\", 1, 0, NULL, 0) = 1\n";
        let calls = parse(trace);
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[0].name, "fsync");
        let w = &calls[1];
        assert_eq!((w.name.as_str(), w.start, w.end), ("pwrite64", 0, 2));
        assert_eq!(w.fd_target(0).as_deref(), Some("/db"));
        assert_eq!(w.bytes(1).as_deref(), Some(&b"A,B"[..]));
        assert_eq!(w.args[3], "4096");
        assert_eq!(w.ret_value(), Some(3));
        assert_eq!(
            calls[2].fd_target(0).as_deref(),
            Some("TCP:[127.0.0.1:1->127.0.0.1:2]")
        );
    }
}
