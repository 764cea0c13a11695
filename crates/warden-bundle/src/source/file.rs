//! A bundle file on disk.

use std::path::PathBuf;
use std::time::Duration;

use super::{BundleSource, PollFuture, SourceError};

/// How often a file source looks at its file while it waits.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// A bundle file, read again when its content changes.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    last: Option<Vec<u8>>,
}

impl FileSource {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            last: None,
        }
    }

    async fn check(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        let bytes = tokio::fs::read(&self.path)
            .await
            .map_err(|e| SourceError(format!("cannot read `{}`: {e}", self.path.display())))?;
        if self.last.as_ref() == Some(&bytes) {
            return Ok(None);
        }
        self.last = Some(bytes.clone());
        Ok(Some(bytes))
    }
}

impl BundleSource for FileSource {
    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn poll(&mut self, wait: Duration) -> PollFuture<'_> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                if let Some(bytes) = self.check().await? {
                    return Ok(Some(bytes));
                }
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                tokio::time::sleep(CHECK_EVERY.min(deadline - now)).await;
            }
        })
    }
}
