//! What a data folder holds on the device at any line of a trace ([`super::strace`]), and
//! whether every answer found it synced.
//!
//! The model is the one a power loss allows: a file's bytes are on the device only as far as a
//! `fsync`/`fdatasync` of that file that *began after* they were written and *ended* before the
//! instant (`sync_file_range`, sled's own flush, syncs nothing here); a folder's entries — a
//! file created, a rename's new name — only once the folder itself was fsynced after them.
//! Everything else is dropped at the power loss. Removals that were not synced are taken as
//! not having happened (the file comes back with its synced bytes).
//!
//! [`Model::acks`] holds every HTTP answer the process wrote (the start of the socket write
//! carrying `HTTP/1.1 …`) with the bytes and entries of the folder that were not durable at
//! that instant, and those of them already written when its request arrived (the socket read
//! that began it): an answer sent while other requests run may find their writes in flight,
//! never one made before its own request came in. [`Model::folder_at`] rebuilds the folder as
//! a power loss at a line leaves it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;

use super::strace::{self, Call};

#[derive(Debug, Clone)]
enum FileOp {
    Write { offset: u64, data: Vec<u8> },
    Truncate(u64),
}

#[derive(Debug, Clone)]
enum DirOp {
    Link { name: String, node: usize },
    Unlink { name: String },
}

/// A file or a folder, as the device would hold it.
#[derive(Debug, Default)]
struct Node {
    path: String,
    dir: bool,
    file_ops: Vec<FileOp>,
    dir_ops: Vec<DirOp>,
    /// (line a sync ended, how many ops it made durable), in line order.
    synced: Vec<(usize, usize)>,
}

impl Node {
    fn ops_len(&self) -> usize {
        if self.dir {
            self.dir_ops.len()
        } else {
            self.file_ops.len()
        }
    }

    /// Ops durable at `line` (syncs that ended before it).
    fn durable_at(&self, line: usize) -> usize {
        self.synced
            .iter()
            .take_while(|(end, _)| *end < line)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
    }

    fn durable_now(&self) -> usize {
        self.synced.iter().map(|(_, n)| *n).max().unwrap_or(0)
    }
}

/// An HTTP answer written by the process, and what of the folder was not durable then.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The line where the socket write began.
    pub line: usize,
    pub status: u16,
    /// The client's port of the connection.
    pub client_port: u16,
    /// Bytes or entries of the folder not on the device at that instant.
    pub unsynced: Vec<String>,
    /// The line where its request arrived (the first read of it from the socket).
    pub request_line: Option<usize>,
    /// Bytes or entries written before the request arrived and still not on the device when
    /// it was answered: whatever the request's answer may depend on.
    pub unsynced_since_request: Vec<String>,
}

/// What a request found written when it arrived: per node of the folder, how many of its
/// operations (a folder's: up to its last new entry) must be durable before its answer.
type Marks = Vec<(usize, usize)>;

/// The data folder through a trace.
#[derive(Debug, Default)]
pub struct Model {
    root: String,
    nodes: Vec<Node>,
    /// Current names (full paths) → node.
    names: HashMap<String, usize>,
    fds: HashMap<i64, (usize, u64)>,
    /// A sync begun: (pid, start line) → (node, ops it covers).
    syncing: HashMap<(u32, usize), (usize, usize)>,
    /// Requests read and not yet answered, per client port: (line, what was written then).
    requests: HashMap<u16, VecDeque<(usize, Marks)>>,
    pub acks: Vec<Ack>,
    /// Every sync of a file of the folder that returned: (thread, file's path, line it ended).
    pub syncs: Vec<(u32, String, usize)>,
    /// Calls on the folder the model does not know how to replay (a test of the model's reach).
    pub unmodelled: Vec<String>,
    /// The last line of the trace.
    pub last_line: usize,
}

fn parent_and_name(path: &str) -> (String, String) {
    match path.rsplit_once('/') {
        Some((p, n)) => (p.to_string(), n.to_string()),
        None => (String::new(), path.to_string()),
    }
}

impl Model {
    /// Replays `calls` over the folder `root` (which existed, empty and durable, before them).
    pub fn build(root: &Path, calls: &[Call]) -> Model {
        let root = root.to_string_lossy().trim_end_matches('/').to_string();
        let mut m = Model {
            root: root.clone(),
            ..Model::default()
        };
        m.nodes.push(Node {
            path: root.clone(),
            dir: true,
            ..Node::default()
        });
        m.names.insert(root, 0);
        // Every call begins (syncs capture, answers are checked) and ends (effects) in line order.
        let mut moments: Vec<(usize, bool, usize)> = Vec::with_capacity(calls.len() * 2);
        for (i, c) in calls.iter().enumerate() {
            moments.push((c.start, false, i));
            moments.push((c.end, true, i));
            m.last_line = m.last_line.max(c.end);
        }
        moments.sort();
        for (_, is_end, i) in moments {
            if is_end {
                m.end(&calls[i]);
            } else {
                m.begin(&calls[i]);
            }
        }
        m
    }

    fn inside(&self, path: &str) -> bool {
        path == self.root || path.starts_with(&format!("{}/", self.root))
    }

    fn begin(&mut self, c: &Call) {
        match c.name.as_str() {
            "fsync" | "fdatasync" => {
                let Some(fd) = c.args.first().and_then(|a| strace::fd_number(a)) else {
                    return;
                };
                let node = self
                    .fds
                    .get(&fd)
                    .map(|(n, _)| *n)
                    .or_else(|| c.fd_target(0).and_then(|p| self.names.get(&p).copied()));
                if let Some(node) = node {
                    let covered = self.nodes[node].ops_len();
                    self.syncing.insert((c.pid, c.start), (node, covered));
                }
            }
            "write" | "writev" | "sendto" | "sendmsg" => self.maybe_ack(c),
            // The kernel frees the number as the call begins: another thread's open may get
            // it before this close's line ends (`close(…) <unfinished ...>`, `openat = 56`,
            // `<... close resumed>`), and that file's writes must not be taken as lost.
            "close" => {
                if let Some(fd) = c.args.first().and_then(|a| strace::fd_number(a)) {
                    self.fds.remove(&fd);
                }
            }
            _ => {}
        }
    }

    /// The first bytes of string argument 1 of a socket call on a TCP connection, and the
    /// connection's client port (the last port of strace's `TCP:[server->client]`).
    fn socket_data(c: &Call) -> Option<(Vec<u8>, u16)> {
        let target = c.fd_target(0)?;
        if !target.starts_with("TCP:") {
            return None;
        }
        let data = c.args.get(1).and_then(|a| {
            let q = a.find('"')?;
            let rest = &a[q..];
            let close = rest[1..].find('"').map(|i| i + 2)?;
            strace::unquote(&rest[..close])
        })?;
        let client_port = target
            .trim_end_matches(']')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        Some((data, client_port))
    }

    /// A read that begins a request (`GET /…`, `POST /…`): what was written by then is what
    /// its answer must find durable.
    fn maybe_request(&mut self, c: &Call) {
        let Some((data, client_port)) = Self::socket_data(c) else {
            return;
        };
        const METHODS: [&[u8]; 5] = [b"GET /", b"POST /", b"PUT /", b"DELETE /", b"PATCH /"];
        if METHODS.iter().any(|m| data.starts_with(m)) {
            let marks = self.marks();
            self.requests
                .entry(client_port)
                .or_default()
                .push_back((c.end, marks));
        }
    }

    fn maybe_ack(&mut self, c: &Call) {
        let Some((data, client_port)) = Self::socket_data(c) else {
            return;
        };
        if !data.starts_with(b"HTTP/1.1 ") {
            return;
        }
        let status = std::str::from_utf8(&data[9..12.min(data.len())])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let unsynced = self.unsynced_against(&self.marks());
        let request = self
            .requests
            .get_mut(&client_port)
            .and_then(VecDeque::pop_front);
        let unsynced_since_request = request
            .as_ref()
            .map(|(_, marks)| self.unsynced_against(marks))
            .unwrap_or_default();
        self.acks.push(Ack {
            line: c.start,
            status,
            client_port,
            unsynced,
            request_line: request.map(|(line, _)| line),
            unsynced_since_request,
        });
    }

    /// What must be durable for everything written so far to be: per linked node, its
    /// operations (a folder's up to its last new entry).
    fn marks(&self) -> Marks {
        let mut out: Marks = self
            .names
            .values()
            .map(|&n| {
                let node = &self.nodes[n];
                let need = if node.dir {
                    node.dir_ops
                        .iter()
                        .rposition(|op| matches!(op, DirOp::Link { .. }))
                        .map_or(0, |i| i + 1)
                } else {
                    node.file_ops.len()
                };
                (n, need)
            })
            .filter(|&(_, need)| need > 0)
            .collect();
        out.sort();
        out
    }

    /// What of `marks` is not durable now: files with writes after their last sync, folders
    /// with new entries after theirs.
    fn unsynced_against(&self, marks: &Marks) -> Vec<String> {
        let mut out = Vec::new();
        for &(n, need) in marks {
            if !self.names.values().any(|&linked| linked == n) {
                continue; // removed since: what it held no longer matters
            }
            let node = &self.nodes[n];
            let durable = node.durable_now();
            if durable >= need {
                continue;
            }
            if node.dir {
                let names: Vec<&str> = node.dir_ops[durable..need]
                    .iter()
                    .filter_map(|op| match op {
                        DirOp::Link { name, .. } => Some(name.as_str()),
                        DirOp::Unlink { .. } => None,
                    })
                    .collect();
                out.push(format!(
                    "{}: new entries not synced ({})",
                    node.path,
                    names.join(", ")
                ));
            } else {
                let bytes: usize = node.file_ops[durable..need]
                    .iter()
                    .map(|op| match op {
                        FileOp::Write { data, .. } => data.len(),
                        FileOp::Truncate(_) => 0,
                    })
                    .sum();
                out.push(format!(
                    "{}: {} write(s), {bytes} bytes, after its last fsync",
                    node.path,
                    need - durable
                ));
            }
        }
        out
    }

    fn end(&mut self, c: &Call) {
        if c.failed() {
            return;
        }
        match c.name.as_str() {
            "recvfrom" => self.maybe_request(c),
            "open" | "openat" | "creat" => self.opened(c),
            "write" | "pwrite64" => self.wrote(c),
            "writev" | "pwritev" | "pwritev2"
                if c.fd_target(0).is_some_and(|p| self.inside(&p)) =>
            {
                self.unmodelled.push(format!("line {}: {}", c.end, c.name));
            }
            "ftruncate" => {
                let Some(fd) = c.args.first().and_then(|a| strace::fd_number(a)) else {
                    return;
                };
                let len = c.args.get(1).and_then(|a| a.parse().ok()).unwrap_or(0);
                if let Some((node, _)) = self.fds.get(&fd).copied() {
                    self.nodes[node].file_ops.push(FileOp::Truncate(len));
                }
            }
            "fsync" | "fdatasync" => {
                if let Some((node, covered)) = self.syncing.remove(&(c.pid, c.start)) {
                    self.nodes[node].synced.push((c.end, covered));
                    self.syncs
                        .push((c.pid, self.nodes[node].path.clone(), c.end));
                }
            }
            "mkdir" | "mkdirat" => {
                let i = usize::from(c.name == "mkdirat");
                if let Some(path) = c.bytes(i).map(|b| String::from_utf8_lossy(&b).into_owned()) {
                    if self.inside(&path) && !self.names.contains_key(&path) {
                        self.create(&path, true);
                    }
                }
            }
            "rename" | "renameat" | "renameat2" => {
                let (a, b) = if c.name == "rename" { (0, 1) } else { (1, 3) };
                let from = c.bytes(a).map(|b| String::from_utf8_lossy(&b).into_owned());
                let to = c.bytes(b).map(|b| String::from_utf8_lossy(&b).into_owned());
                if let (Some(from), Some(to)) = (from, to) {
                    self.renamed(&from, &to);
                }
            }
            "unlink" | "unlinkat" => {
                let i = usize::from(c.name == "unlinkat");
                if let Some(path) = c.bytes(i).map(|b| String::from_utf8_lossy(&b).into_owned()) {
                    if let Some(_node) = self.names.remove(&path) {
                        let (parent, name) = parent_and_name(&path);
                        if let Some(&p) = self.names.get(&parent) {
                            self.nodes[p].dir_ops.push(DirOp::Unlink { name });
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn create(&mut self, path: &str, dir: bool) -> Option<usize> {
        let (parent, name) = parent_and_name(path);
        let p = *self.names.get(&parent)?;
        let node = self.nodes.len();
        self.nodes.push(Node {
            path: path.to_string(),
            dir,
            ..Node::default()
        });
        self.nodes[p].dir_ops.push(DirOp::Link { name, node });
        self.names.insert(path.to_string(), node);
        Some(node)
    }

    fn opened(&mut self, c: &Call) {
        let Some(fd) = strace::fd_number(&c.ret) else {
            return;
        };
        self.fds.remove(&fd);
        let Some(path) = strace::annotation(&c.ret) else {
            return;
        };
        if !self.inside(&path) {
            return;
        }
        let flags = c
            .args
            .iter()
            .find(|a| a.starts_with("O_"))
            .cloned()
            .unwrap_or_default();
        let node = match self.names.get(&path) {
            Some(&n) => n,
            None if flags.contains("O_CREAT") || c.name == "creat" => {
                match self.create(&path, false) {
                    Some(n) => n,
                    None => return,
                }
            }
            None => {
                self.unmodelled
                    .push(format!("line {}: {path} opened, never created", c.end));
                return;
            }
        };
        if flags.contains("O_TRUNC") || c.name == "creat" {
            self.nodes[node].file_ops.push(FileOp::Truncate(0));
        }
        self.fds.insert(fd, (node, 0));
    }

    fn wrote(&mut self, c: &Call) {
        let Some(fd) = c.args.first().and_then(|a| strace::fd_number(a)) else {
            return;
        };
        let Some(&(node, pos)) = self.fds.get(&fd) else {
            return;
        };
        let Some(data) = c.bytes(1) else {
            self.unmodelled
                .push(format!("line {}: {} of a cut string", c.end, c.name));
            return;
        };
        let written = c.ret_value().unwrap_or(0).max(0) as usize;
        let data = data[..written.min(data.len())].to_vec();
        let offset = if c.name == "pwrite64" {
            c.args.get(3).and_then(|a| a.parse().ok()).unwrap_or(0)
        } else {
            self.fds.insert(fd, (node, pos + data.len() as u64));
            pos
        };
        self.nodes[node]
            .file_ops
            .push(FileOp::Write { offset, data });
    }

    fn renamed(&mut self, from: &str, to: &str) {
        let Some(node) = self.names.remove(from) else {
            return;
        };
        let (from_parent, from_name) = parent_and_name(from);
        let (to_parent, to_name) = parent_and_name(to);
        self.names.insert(to.to_string(), node);
        self.nodes[node].path = to.to_string();
        if let Some(&p) = self.names.get(&to_parent) {
            self.nodes[p].dir_ops.push(DirOp::Link {
                name: to_name,
                node,
            });
        }
        if let Some(&p) = self.names.get(&from_parent) {
            self.nodes[p]
                .dir_ops
                .push(DirOp::Unlink { name: from_name });
        }
    }

    /// Writes into `out` (an empty folder) what a power loss at `line` leaves of the folder.
    pub fn folder_at(&self, line: usize, out: &Path) -> std::io::Result<()> {
        self.write_dir(0, line, out)
    }

    fn write_dir(&self, dir: usize, line: usize, out: &Path) -> std::io::Result<()> {
        let node = &self.nodes[dir];
        let durable = node.durable_at(line);
        let mut entries: BTreeMap<String, usize> = BTreeMap::new();
        for op in &node.dir_ops[..durable] {
            match op {
                DirOp::Link { name, node } => {
                    entries.insert(name.clone(), *node);
                }
                DirOp::Unlink { name } => {
                    entries.remove(name);
                }
            }
        }
        for (name, child) in entries {
            let path = out.join(&name);
            if self.nodes[child].dir {
                std::fs::create_dir_all(&path)?;
                self.write_dir(child, line, &path)?;
            } else {
                std::fs::write(&path, self.content_at(child, line))?;
            }
        }
        Ok(())
    }

    fn content_at(&self, node: usize, line: usize) -> Vec<u8> {
        let n = &self.nodes[node];
        let mut data: Vec<u8> = Vec::new();
        for op in &n.file_ops[..n.durable_at(line)] {
            match op {
                FileOp::Truncate(len) => data.resize(*len as usize, 0),
                FileOp::Write { offset, data: d } => {
                    let end = *offset as usize + d.len();
                    if data.len() < end {
                        data.resize(end, 0);
                    }
                    data[*offset as usize..end].copy_from_slice(d);
                }
            }
        }
        data
    }

    /// Bytes written into the folder over the whole trace, and syncs of it.
    pub fn totals(&self) -> (u64, usize) {
        let bytes = self
            .nodes
            .iter()
            .flat_map(|n| &n.file_ops)
            .map(|op| match op {
                FileOp::Write { data, .. } => data.len() as u64,
                FileOp::Truncate(_) => 0,
            })
            .sum();
        let syncs = self.nodes.iter().map(|n| n.synced.len()).sum();
        (bytes, syncs)
    }

    /// Files sled wrote under `blobs/` (values over ~128 KiB), and how many of them were
    /// fsynced.
    pub fn blobs(&self) -> (usize, usize) {
        let blobs: Vec<&Node> = self
            .nodes
            .iter()
            .filter(|n| !n.dir && n.path.contains("/blobs/"))
            .collect();
        let synced = blobs
            .iter()
            .filter(|n| n.durable_now() >= n.file_ops.len())
            .count();
        (blobs.len(), synced)
    }

    /// Syncs of the files whose path ends with `suffix` that ended after line `from` and by
    /// line `to`.
    pub fn syncs_between(&self, suffix: &str, from: usize, to: usize) -> usize {
        self.nodes
            .iter()
            .filter(|n| !n.dir && n.path.ends_with(suffix))
            .flat_map(|n| &n.synced)
            .filter(|(end, _)| *end > from && *end <= to)
            .count()
    }

    /// The largest single write into the folder, and the file it went to.
    pub fn largest_write(&self) -> (usize, String) {
        let mut best = (0, String::new());
        for n in &self.nodes {
            for op in &n.file_ops {
                if let FileOp::Write { data, .. } = op {
                    if data.len() > best.0 {
                        best = (data.len(), n.path.clone());
                    }
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(trace: &str) -> Model {
        Model::build(Path::new("/d"), &strace::parse(trace))
    }

    const CREATE: &str = "1 openat(AT_FDCWD</>, \"/d/f\", O_WRONLY|O_CREAT, 0666) = 3</d/f>\n";
    const WRITE: &str = "1 write(3</d/f>, \"\\x41\\x42\", 2) = 2\n";
    const ANSWER: &str =
        "1 sendto(5<TCP:[127.0.0.1:80->127.0.0.1:999]>, \"HTTP/1.1 201 Created\", 20, 0, NULL, 0) = 20\n";

    #[test]
    fn an_answer_after_a_write_without_fsync_is_flagged() {
        let m = model(&format!("{CREATE}{WRITE}{ANSWER}"));
        assert_eq!(m.acks.len(), 1);
        assert_eq!((m.acks[0].status, m.acks[0].client_port), (201, 999));
        assert_eq!(m.acks[0].unsynced.len(), 2, "{:?}", m.acks[0].unsynced);
    }

    #[test]
    fn a_file_and_folder_synced_before_the_answer_pass_and_replay() {
        let dirsync = "1 openat(AT_FDCWD</>, \"/d\", O_RDONLY) = 4</d>\n1 fsync(4</d>) = 0\n";
        let m = model(&format!(
            "{CREATE}{WRITE}1 fdatasync(3</d/f>) = 0\n{dirsync}{ANSWER}1 write(3</d/f>, \"\\x43\", 1) = 1\n"
        ));
        assert!(m.acks[0].unsynced.is_empty(), "{:?}", m.acks[0].unsynced);
        let dir = tempfile::tempdir().expect("dir");
        m.folder_at(m.last_line + 1, dir.path()).expect("replay");
        // The last write was never synced: dropped.
        assert_eq!(std::fs::read(dir.path().join("f")).expect("f"), b"AB");
        // Before the folder's sync the file's entry is not there.
        let early = tempfile::tempdir().expect("dir");
        m.folder_at(3, early.path()).expect("replay");
        assert!(!early.path().join("f").exists());
    }

    #[test]
    fn an_answer_depends_on_what_was_written_before_its_request_arrived() {
        let request = |port: u16| {
            format!(
                "1 recvfrom(5<TCP:[127.0.0.1:80->127.0.0.1:{port}]>, \"POST /v1/x HTTP/1.1\", 8192, 0, NULL, NULL) = 18\n"
            )
        };
        let dirsync = "1 openat(AT_FDCWD</>, \"/d\", O_RDONLY) = 4</d>\n1 fsync(4</d>) = 0\n";
        // Written before the request came in, not synced at its answer: flagged.
        let m = model(&format!("{CREATE}{dirsync}{WRITE}{}{ANSWER}", request(999)));
        assert_eq!(m.acks[0].request_line, Some(4));
        assert_eq!(
            m.acks[0].unsynced_since_request.len(),
            1,
            "{:?}",
            m.acks[0].unsynced_since_request
        );
        // Written after it came in (another request's group in flight): its answer does not
        // depend on it, though the answer-time check still sees it.
        let m = model(&format!("{CREATE}{dirsync}{}{WRITE}{ANSWER}", request(999)));
        assert!(m.acks[0].unsynced_since_request.is_empty());
        assert_eq!(m.acks[0].unsynced.len(), 1);
        // Synced before the answer: nothing flagged.
        let m = model(&format!(
            "{CREATE}{dirsync}{WRITE}{}1 fdatasync(3</d/f>) = 0\n{ANSWER}",
            request(999)
        ));
        assert!(m.acks[0].unsynced_since_request.is_empty());
        assert!(m.acks[0].unsynced.is_empty());
    }

    #[test]
    fn a_close_ending_after_another_thread_reused_its_number_closes_the_old_file() {
        let m = model(&format!(
            "2 close(3</d/old>) <unfinished ...>\n{CREATE}2 <... close resumed>) = 0\n{WRITE}1 fsync(3</d/f>) = 0\n"
        ));
        let dir = tempfile::tempdir().expect("dir");
        m.folder_at(m.last_line + 1, dir.path()).expect("replay");
        assert!(m.unmodelled.is_empty(), "{:?}", m.unmodelled);
        assert_eq!(m.totals().0, 2, "the write to the reused number counts");
    }

    #[test]
    fn a_sync_that_began_before_a_write_ended_does_not_cover_it() {
        let m = model(&format!(
            "{CREATE}2 fdatasync(3</d/f> <unfinished ...>\n{WRITE}2 <... fdatasync resumed>) = 0\n{ANSWER}"
        ));
        assert!(
            m.acks[0].unsynced.iter().any(|u| u.contains("1 write")),
            "{:?}",
            m.acks[0].unsynced
        );
    }
}
