//! A client of one MCP server (the Model Context Protocol, over stdio, with
//! the official `rmcp` SDK). The server runs as a child process in the same
//! fence as an agent's commands: the agent's worktree as its working
//! directory and only writable place besides a private temp dir, the
//! scrubbed environment plus what its config gives it, and the network only
//! where commands have it. Its whole process group is killed when the client
//! is shut down or dropped: no server outlives its agent.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    JsonObject, Tool,
};
use rmcp::service::{RoleClient, RunningService, ServiceError, ServiceExt};
use rmcp::transport::IntoTransport;
use tokio::io::AsyncReadExt;

use super::bounded_lines::BoundedLines;
use super::isolation::{Fence, FenceError, Isolation, expand_home};

/// Bytes of a server's standard error kept to explain why it failed.
const STDERR_TAIL: usize = 2_000;
/// The longest message (one line of JSON) a server may send: the SDK
/// buffers a line until its end, so a longer one breaks the connection.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// How long a stopped server may take to exit after it is killed.
const EXIT_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("cannot fence it: {0}")]
    Fence(#[from] FenceError),
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{what}: no answer within {}s", .after.as_secs())]
    Timeout { what: &'static str, after: Duration },
    #[error("{what}: {message}")]
    Protocol { what: &'static str, message: String },
    /// A start that failed, with what the server wrote to its standard error.
    #[error("{error}; it said: {stderr}")]
    Said {
        error: Box<McpError>,
        stderr: String,
    },
    #[error("it exited ({status}) without answering{}", said(.stderr))]
    Exited {
        status: String,
        stderr: Option<String>,
    },
}

fn said(stderr: &Option<String>) -> String {
    stderr
        .as_deref()
        .map(|s| format!("; it said: {s}"))
        .unwrap_or_default()
}

/// What a tool call answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutcome {
    /// The server marked the result as an error.
    pub is_error: bool,
    /// Its text content, one block a line; other content is named, not shown.
    pub text: String,
}

/// A connected server and the tools it listed.
pub struct McpClient {
    service: RunningService<RoleClient, ClientConfig>,
    tools: Vec<Tool>,
    /// `None` for a server that is no child process (an in-process one in tests).
    process: Option<ServerProcess>,
}

/// The server's process group, killed when this is dropped.
struct ServerProcess {
    child: tokio::process::Child,
    /// Owns the server's private temp dir: kept as long as it runs.
    _fence: Fence,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Reads standard error until the server's end of it closes.
    stderr_reader: Option<tokio::task::JoinHandle<()>>,
}

impl McpClient {
    /// Starts `command args` fenced in `cwd` with `env` added, shakes hands
    /// and lists its tools, each step within `timeout`.
    pub async fn spawn(
        command: &str,
        args: &[String],
        env: &BTreeMap<String, String>,
        cwd: &Path,
        isolation: &Isolation,
        timeout: Duration,
    ) -> Result<Self, McpError> {
        let fence = Fence::new(isolation, cwd)?;
        let mut process =
            tokio::process::Command::from(fence.std_command(&exec_line(command, args)));
        process
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        process.process_group(0);
        let mut child = process.spawn().map_err(|source| McpError::Spawn {
            command: command.to_owned(),
            source,
        })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(McpError::Protocol {
                what: "start",
                message: "its standard input or output could not be connected".into(),
            });
        };
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_reader = child.stderr.take().map(|mut pipe| {
            let tail = stderr.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = pipe.read(&mut buf).await {
                    if let Ok(mut tail) = tail.lock() {
                        tail.extend_from_slice(&buf[..n]);
                        let excess = tail.len().saturating_sub(STDERR_TAIL);
                        tail.drain(..excess);
                    }
                }
            })
        });
        let process = ServerProcess {
            child,
            _fence: fence,
            stderr,
            stderr_reader,
        };
        let stdout = BoundedLines::new(stdout, MAX_MESSAGE_BYTES);
        match Self::connect((stdout, stdin), timeout).await {
            Ok(mut client) => {
                client.process = Some(process);
                Ok(client)
            }
            Err(error) => {
                let mut process = process;
                // A server that broke the connection is likely gone or going.
                let exited = match error {
                    McpError::Timeout { .. } => None,
                    _ => tokio::time::timeout(EXIT_WAIT, process.child.wait())
                        .await
                        .ok()
                        .and_then(Result::ok),
                };
                process.stop().await;
                let stderr = process.stderr_tail();
                Err(match (exited, stderr) {
                    (Some(status), stderr) => McpError::Exited {
                        status: status.to_string(),
                        stderr,
                    },
                    (None, Some(stderr)) => McpError::Said {
                        error: Box::new(error),
                        stderr,
                    },
                    (None, None) => error,
                })
            }
        }
    }

    /// Shakes hands with a server over `transport` and lists its tools,
    /// each step within `timeout`.
    pub async fn connect<T, E, A>(transport: T, timeout: Duration) -> Result<Self, McpError>
    where
        T: IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("memofab", env!("CARGO_PKG_VERSION")),
        );
        let service = tokio::time::timeout(timeout, info.serve(transport))
            .await
            .map_err(|_| McpError::Timeout {
                what: "the handshake",
                after: timeout,
            })?
            .map_err(|e| McpError::Protocol {
                what: "the handshake",
                message: e.to_string(),
            })?;
        let tools = tokio::time::timeout(timeout, service.list_all_tools())
            .await
            .map_err(|_| McpError::Timeout {
                what: "listing its tools",
                after: timeout,
            })?
            .map_err(|e| McpError::Protocol {
                what: "listing its tools",
                message: e.to_string(),
            })?;
        Ok(Self {
            service,
            tools,
            process: None,
        })
    }

    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// Calls `tool` with `arguments`, waiting `timeout` at most. A refusal by
    /// the server (unknown tool, bad arguments) is an error outcome, as the
    /// model should see it; a broken connection or a timeout is an `Err`.
    pub async fn call(
        &self,
        tool: &str,
        arguments: Option<JsonObject>,
        timeout: Duration,
    ) -> Result<CallOutcome, McpError> {
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = arguments;
        match tokio::time::timeout(timeout, self.service.call_tool(params)).await {
            Err(_) => Err(McpError::Timeout {
                what: "the call",
                after: timeout,
            }),
            Ok(Ok(result)) => Ok(outcome(&result)),
            Ok(Err(ServiceError::McpError(refused))) => Ok(CallOutcome {
                is_error: true,
                text: format!("the server refused the call: {}", refused.message),
            }),
            Ok(Err(e)) => Err(McpError::Protocol {
                what: "the call",
                message: e.to_string(),
            }),
        }
    }

    /// Closes the connection and kills the server, waiting for it to exit.
    pub async fn shutdown(self) {
        let Self {
            service, process, ..
        } = self;
        drop(service);
        if let Some(mut process) = process {
            process.stop().await;
        }
    }
}

impl ServerProcess {
    /// Kills the process group and reaps the server.
    async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            super::process::kill_group(pid);
        }
        let _ = tokio::time::timeout(EXIT_WAIT, self.child.wait()).await;
        if let Some(reader) = self.stderr_reader.take() {
            let _ = tokio::time::timeout(EXIT_WAIT, reader).await;
        }
    }

    fn stderr_tail(&self) -> Option<String> {
        let tail = self.stderr.lock().ok()?;
        let text = String::from_utf8_lossy(&tail).trim().to_owned();
        (!text.is_empty()).then_some(text)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // `id` is `None` once the child is reaped: its pid may be reused.
        if let Some(pid) = self.child.id() {
            super::process::kill_group(pid);
        }
    }
}

/// `exec command args…` for `sh -c`, each word quoted: the server replaces
/// the shell, so killing the group's leader kills the server.
fn exec_line(command: &str, args: &[String]) -> String {
    let command = expand_home(Path::new(command)).display().to_string();
    std::iter::once(command.as_str())
        .chain(args.iter().map(String::as_str))
        .fold("exec".to_owned(), |mut line, word| {
            line.push(' ');
            line.push('\'');
            line.push_str(&word.replace('\'', r"'\''"));
            line.push('\'');
            line
        })
}

fn outcome(result: &CallToolResult) -> CallOutcome {
    let mut lines: Vec<String> = result
        .content
        .iter()
        .map(|block| match block.as_text() {
            Some(text) => text.text.clone(),
            None => "[content other than text, not shown]".to_owned(),
        })
        .collect();
    if lines.is_empty()
        && let Some(structured) = &result.structured_content
    {
        lines.push(structured.to_string());
    }
    CallOutcome {
        is_error: result.is_error.unwrap_or(false),
        text: lines.join("\n"),
    }
}

#[cfg(test)]
#[path = "mcp_client_tests.rs"]
pub(crate) mod tests;
