//! What a guest writes to stdout and stderr: kept for the invocation's
//! [`RunReport`](super::RunReport), up to a cap, and passed on to the
//! host's sink as it is written, when the host gave one.

use std::sync::Arc;

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Which of a guest's output streams a chunk was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputStreamKind {
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr (a Rust guest's panic message goes here).
    Stderr,
}

/// Receives a guest's output as the guest writes it: each call is one
/// write, which need not end at a line break.
pub type OutputSink = Arc<dyn Fn(OutputStreamKind, &[u8]) + Send + Sync>;

/// One output stream of one invocation.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    kept: MemoryOutputPipe,
    kind: OutputStreamKind,
    sink: Option<OutputSink>,
}

impl GuestOutput {
    /// Keeps up to `capacity` bytes; past that the guest's write fails.
    pub fn new(kind: OutputStreamKind, capacity: usize, sink: Option<OutputSink>) -> Self {
        GuestOutput {
            kept: MemoryOutputPipe::new(capacity),
            kind,
            sink,
        }
    }

    /// What was kept.
    pub fn contents(&self) -> Vec<u8> {
        self.kept.contents().to_vec()
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASIp3 guests write through this; the host links WASIp2.
        Box::new(self.kept.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.kept.write(bytes.clone())?;
        if let Some(sink) = &self.sink {
            sink(self.kind, &bytes);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        self.kept.check_write()
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}
