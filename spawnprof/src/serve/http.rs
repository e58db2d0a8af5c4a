//! A minimal HTTP/1.1 server for two read-only endpoints, on tokio: one
//! request per connection (`Connection: close`), a bounded request head,
//! a deadline per connection and a cap on connections at once, so a slow
//! or hostile client costs a bounded amount of memory and no scrape waits
//! behind it. (A general HTTP stack would be most of the binary's new
//! code for `GET /metrics` and `GET /ready`.)
use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

/// What a handler answers: status, content type, body.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// Largest request head read; longer ones get 431.
const MAX_HEAD: usize = 8 * 1024;
/// A connection that has not sent its request and read the answer by
/// then is dropped.
const DEADLINE: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 32;

/// Accepts connections until the future is dropped; `handle` maps a GET
/// path to its response.
pub async fn serve<H>(listener: TcpListener, handle: H)
where
    H: Fn(&str) -> Response + Clone + Send + Sync + 'static,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            // EMFILE and the like: wait a little rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(DEADLINE, connection(stream, &handle)).await;
            drop(permit);
        });
    }
}

async fn connection<H: Fn(&str) -> Response>(mut stream: TcpStream, handle: &H) {
    let (response, head_only) = match read_head(&mut stream).await {
        Ok(head) => (route(&head, handle), head.starts_with("HEAD ")),
        Err(status) => (Response::text(status, "bad request\n"), false),
    };
    let mut bytes = encode(&response);
    if head_only {
        // The same headers (Content-Length included), without the body.
        bytes.truncate(bytes.len() - response.body.len());
    }
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
}

/// Reads up to the blank line that ends the head; an HTTP status on error.
async fn read_head(stream: &mut TcpStream) -> Result<String, u16> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
        if n == 0 {
            return Err(400);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return String::from_utf8(buf).map_err(|_| 400);
        }
        if buf.len() > MAX_HEAD {
            return Err(431);
        }
    }
}

/// The request line's method and path to a response.
fn route<H: Fn(&str) -> Response>(head: &str, handle: &H) -> Response {
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match method {
        "GET" | "HEAD" => handle(path),
        _ => Response::text(405, "only GET and HEAD\n"),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn encode(r: &Response) -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(r.body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_by_method_and_path() {
        let handle = |p: &str| Response::text(if p == "/ready" { 200 } else { 404 }, p);
        let ok = route("GET /ready?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", &handle);
        assert_eq!((ok.status, ok.body.as_str()), (200, "/ready"));
        let head = route("HEAD /ready HTTP/1.1\r\n\r\n", &handle);
        assert_eq!((head.status, head.body.as_str()), (200, "/ready"));
        assert_eq!(route("POST /ready HTTP/1.1\r\n\r\n", &handle).status, 405);
        assert_eq!(route("GET /nope HTTP/1.1\r\n\r\n", &handle).status, 404);
        let bytes = encode(&Response::text(200, "hi"));
        assert!(
            String::from_utf8(bytes)
                .unwrap()
                .ends_with("Content-Length: 2\r\nConnection: close\r\n\r\nhi")
        );
    }
}
