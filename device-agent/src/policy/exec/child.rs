//! The policy command's process: `sh -c CMD` as the leader of its own
//! process group, so stopping it early kills everything it started, and the
//! first line of its stdout (a picked number or a JSON answer).

use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::io::Errno;
use rustix::process::{Pid, Signal, kill_process, kill_process_group};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// At most this many bytes of the first line of the command's stdout are
/// kept; the rest of its output is read and discarded.
pub(super) const STDOUT_LIMIT: usize = 1024;

/// How long stdout is still read after the command exited, for output that
/// is already in the pipe; a process the command left behind holding stdout
/// open does not hold up the decision longer than this.
const STDOUT_GRACE: Duration = Duration::from_millis(100);

/// A running policy command. Dropping it before the command was reaped kills
/// the whole process group (and, through `kill_on_drop`, the leader).
#[derive(Debug)]
pub(in crate::policy) struct PolicyChild {
    child: Child,
}

impl PolicyChild {
    /// Starts `sh -c command` in a new process group, stdin and stdout
    /// piped, stderr inherited.
    pub(in crate::policy) fn spawn(command: &str) -> io::Result<Self> {
        let mut shell = Command::new("sh");
        shell.arg("-c").arg(command);
        Self::start(shell)
    }

    /// Starts `command` (a program and its arguments) the same way: its own
    /// process group, stdin and stdout piped, stderr inherited.
    pub(in crate::policy) fn start(mut command: Command) -> io::Result<Self> {
        let child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own group: a kill reaches whatever the command started,
            // and a Ctrl-C meant for the daemon's terminal does not.
            .process_group(0)
            // A backstop: if this value is dropped, the leader must not outlive it.
            .kill_on_drop(true)
            .spawn()?;
        Ok(Self { child })
    }

    /// Feeds `input` on stdin (then closes it) and waits for the command to
    /// exit; returns its status and the start of its stdout (up to the first
    /// newline, at most [`STDOUT_LIMIT`] bytes).
    pub(in crate::policy) async fn run(
        &mut self,
        input: &[u8],
    ) -> io::Result<(ExitStatus, Vec<u8>)> {
        let stdin = self.child.stdin.take();
        // Read to its end (output after the first line is discarded), so a
        // chatty command neither blocks on a full pipe nor dies of SIGPIPE.
        let mut stdout = self.child.stdout.take();
        let mut head = Vec::with_capacity(STDOUT_LIMIT);
        let status = {
            let reading = read_first_line(stdout.as_mut(), &mut head);
            tokio::pin!(reading);
            let waiting = async {
                let ((), status) = tokio::join!(write_input(stdin, input), self.child.wait());
                status
            };
            tokio::pin!(waiting);
            let mut is_read = false;
            let status = loop {
                tokio::select! {
                    status = &mut waiting => break status?,
                    () = &mut reading, if !is_read => is_read = true,
                }
            };
            if !is_read
                && tokio::time::timeout(STDOUT_GRACE, &mut reading)
                    .await
                    .is_err()
            {
                tracing::warn!("the policy command left its stdout open; using what it printed");
            }
            status
        };
        Ok((status, head))
    }

    /// Kills the process group and reaps the leader, so neither a stray
    /// process nor a zombie remains.
    pub(in crate::policy) async fn kill(&mut self) {
        if self.child.id().is_none() {
            // Already reaped: its pid may name someone else's group by now.
            return;
        }
        self.kill_group();
        if let Err(error) = self.child.kill().await {
            tracing::warn!(%error, "cannot kill the policy command");
        }
    }

    /// SIGINT to the leader alone (`notify-send --wait` closes its
    /// notification then), up to `grace` for it to exit, then
    /// [`Self::kill`] for whatever remains.
    pub(in crate::policy) async fn interrupt(&mut self, grace: Duration) {
        if let Some(leader) = self.leader() {
            match kill_process(leader, Signal::INT) {
                Ok(()) | Err(Errno::SRCH) => {}
                Err(error) => tracing::warn!(%error, "cannot interrupt the policy command"),
            }
            let _ = tokio::time::timeout(grace, self.child.wait()).await;
        }
        self.kill().await;
    }

    /// The leader's pid while it is not reaped (until then it cannot name
    /// another process); never pid 1 or below.
    fn leader(&self) -> Option<Pid> {
        self.child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .filter(|&pid| pid > 1)
            .and_then(Pid::from_raw)
    }

    /// SIGKILL to the command's process group, only while the leader is not
    /// reaped: until then its pid (the group id) cannot be reused, so the
    /// signal cannot reach an unrelated process.
    fn kill_group(&self) {
        // Never pid 1 or below: kill(-1) would signal every process.
        let Some(group) = self.leader() else {
            return;
        };
        match kill_process_group(group, Signal::KILL) {
            Ok(()) | Err(Errno::SRCH) => {}
            Err(error) => tracing::warn!(%error, "cannot kill the policy command's process group"),
        }
    }
}

impl Drop for PolicyChild {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// Writes the request and closes stdin; a command may ignore its input and
/// exit early, so a broken pipe is fine.
async fn write_input(stdin: Option<ChildStdin>, input: &[u8]) {
    if let Some(mut stdin) = stdin {
        let _ = stdin.write_all(input).await;
    }
}

/// Reads stdout to its end, keeping in `head` its first
/// line (at most [`STDOUT_LIMIT`] bytes, its newline included); a read
/// error ends it with what was read.
async fn read_first_line(stdout: Option<&mut ChildStdout>, head: &mut Vec<u8>) {
    let Some(stdout) = stdout else {
        return;
    };
    let mut buffer = [0u8; 4096];
    let mut is_complete = false;
    loop {
        match stdout.read(&mut buffer).await {
            Ok(0) => break,
            Ok(read) if !is_complete => {
                let chunk = &buffer[..read];
                let line_end = chunk.iter().position(|&byte| byte == b'\n');
                let wanted = line_end.map_or(chunk.len(), |end| end + 1);
                let room = STDOUT_LIMIT - head.len();
                head.extend_from_slice(&chunk[..wanted.min(room)]);
                is_complete = line_end.is_some() || head.len() >= STDOUT_LIMIT;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot read the policy command's output");
                break;
            }
        }
    }
}
