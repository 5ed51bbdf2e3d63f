//! A cockpit attached over the socket: the server side. (Being built.)

use std::path::PathBuf;

use tokio::io::{AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::error::DaemonResult;
use super::protocol::Reply;
use super::shared::Shared;

/// Serves one attached cockpit until it leaves: `lines` are its further
/// requests (commands), `writer` takes the replies.
pub async fn serve(
    repo: PathBuf,
    lines: Lines<BufReader<OwnedReadHalf>>,
    mut writer: OwnedWriteHalf,
    shared: Shared,
) -> DaemonResult<()> {
    let _ = (repo, lines, shared);
    let reply = Reply::Error {
        message: "attaching is not built yet".into(),
    };
    let mut line = serde_json::to_string(&reply).unwrap_or_default();
    line.push('\n');
    let _ = writer.write_all(line.as_bytes()).await;
    Ok(())
}
