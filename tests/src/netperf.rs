//! Running the host's netperf client against a guest, with a timeout, and
//! reading the transaction rate from its request/response report.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Where Debian's netperf package installs the client.
pub const NETPERF_PATH: &str = "/usr/bin/netperf";

/// A failure to run netperf.
#[derive(Debug)]
pub enum NetperfError {
    /// No netperf binary at [`NETPERF_PATH`] or on `PATH`.
    NotInstalled,
    /// The binary exists but could not be started.
    Spawn { path: PathBuf, source: io::Error },
    /// netperf was still running after `timeout` and was killed.
    Timeout { timeout: Duration, output: String },
    /// Waiting for netperf failed.
    Wait { source: io::Error },
}

impl fmt::Display for NetperfError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInstalled => write!(
                formatter,
                "netperf not found at {NETPERF_PATH} or on PATH: `./run.sh install` installs it"
            ),
            Self::Spawn { path, source } => {
                write!(formatter, "cannot start {}: {source}", path.display())
            }
            Self::Timeout { timeout, output } => {
                write!(
                    formatter,
                    "netperf still running after {timeout:?}, killed; output so far:\n{output}"
                )
            }
            Self::Wait { source } => write!(formatter, "waiting for netperf failed: {source}"),
        }
    }
}

impl std::error::Error for NetperfError {}

/// A finished netperf run.
#[derive(Debug)]
pub struct NetperfRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl NetperfRun {
    /// Returns the transaction rate of a request/response report, per
    /// second, or `None` when the report has no such figure.
    pub fn transaction_rate(&self) -> Option<f64> {
        transaction_rate(&self.stdout)
    }
}

/// Returns the netperf client: [`NETPERF_PATH`], else the first `netperf`
/// on `PATH`.
///
/// # Errors
/// [`NetperfError::NotInstalled`].
pub fn netperf_binary() -> Result<PathBuf, NetperfError> {
    if Path::new(NETPERF_PATH).is_file() {
        return Ok(PathBuf::from(NETPERF_PATH));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|directory| directory.join("netperf"))
        .find(|candidate| candidate.is_file())
        .ok_or(NetperfError::NotInstalled)
}

/// Runs netperf with `arguments` and waits up to `timeout` for it to exit;
/// on timeout the process is killed.
///
/// # Errors
/// See [`NetperfError`].
pub fn run_netperf(arguments: &[String], timeout: Duration) -> Result<NetperfRun, NetperfError> {
    let path = netperf_binary()?;
    let mut child = Command::new(&path)
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetperfError::Spawn {
            path: path.clone(),
            source,
        })?;
    let stdout = collect(
        child
            .stdout
            .take()
            .expect("stdout was configured as a pipe"),
    );
    let stderr = collect(
        child
            .stderr
            .take()
            .expect("stderr was configured as a pipe"),
    );

    let status = wait_with_timeout(&mut child, timeout)?;
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) => Ok(NetperfRun {
            status,
            stdout,
            stderr,
        }),
        None => Err(NetperfError::Timeout {
            timeout,
            output: format!("{stdout}{stderr}"),
        }),
    }
}

fn collect(mut source: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = source.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Returns the exit status, or `None` after killing a child that ran past
/// `timeout`.
fn wait_with_timeout(
    child: &mut Child,
    timeout: Duration,
) -> Result<Option<ExitStatus>, NetperfError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|source| NetperfError::Wait { source })?
        {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Returns the transaction rate from netperf's default request/response
/// report: the sixth column of the first all-numeric row of at least six
/// columns, below the header that ends in "Trans. Rate per sec".
pub fn transaction_rate(report: &str) -> Option<f64> {
    const RATE_COLUMN: usize = 5;
    report.lines().find_map(|line| {
        let fields: Vec<f64> = line
            .split_whitespace()
            .map(str::parse::<f64>)
            .collect::<Result<_, _>>()
            .ok()?;
        (fields.len() > RATE_COLUMN).then(|| fields[RATE_COLUMN])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Output of netperf 2.7.0, `netperf -N -H 127.0.0.1 -t TCP_RR -l 2 --
    // -P ,15007 -r 1,1`, against the guest's echo service.
    const TCP_RR_REPORT: &str = "\
MIGRATED TCP REQUEST/RESPONSE TEST from 0.0.0.0 (0.0.0.0) port 0 AF_INET to 127.0.0.1 () port 15007 AF_INET : no control : demo : first burst 0
Local /Remote
Socket Size   Request  Resp.   Elapsed  Trans.
Send   Recv   Size     Size    Time     Rate         
bytes  Bytes  bytes    bytes   secs.    per sec   

16384  131072 1        1       2.00     21074.97   
0      0     
";

    #[test]
    fn rate_from_rr_report() {
        assert_eq!(transaction_rate(TCP_RR_REPORT), Some(21074.97));
    }

    #[test]
    fn no_rate_without_data_row() {
        let header_only: String = TCP_RR_REPORT.lines().take(6).collect::<Vec<_>>().join("\n");
        assert_eq!(transaction_rate(&header_only), None);
        assert_eq!(transaction_rate("0      0\n"), None);
    }

    #[test]
    fn missing_binary_message_names_install_command() {
        assert!(NetperfError::NotInstalled
            .to_string()
            .contains("./run.sh install"));
    }
}
