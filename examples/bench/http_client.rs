//! A minimal HTTP/1.1 client for the side-by-side benchmark (`run.py`), so
//! that upload and download figures can be taken without curl's own costs.
//!
//! ```text
//! http_client put <url> <file> [-H 'Name: value']...   # prints "<status> <seconds> <bytes sent>"
//! http_client get <url>                                # prints "<status> <seconds> <bytes received>"
//! ```
//!
//! The output has the shape of curl's `-w '%{http_code} %{time_total}
//! %{size_download}'`, so `run.py` reads both the same way. The file is read
//! into memory before the clock starts; the clock covers connecting, sending
//! and receiving the whole response, as curl's `time_total` does. Bodies are
//! streamed in 1 MiB frames on one plain-TCP connection (loopback only).

use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const FRAME_BYTES: usize = 1 << 20;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (method, url, rest) = match args.as_slice() {
        [method, url, rest @ ..] => (method.as_str(), url.parse::<http::Uri>()?, rest),
        _ => bail!("usage: http_client put <url> <file> [-H 'Name: value']... | get <url>"),
    };
    let authority = url.authority().context("the URL has no host")?.clone();
    let host = authority.host();
    if !host.starts_with("127.") && host != "localhost" && host != "[::1]" {
        bail!("{host} is not a loopback address: this client is for local benchmarks");
    }
    let port = authority.port_u16().unwrap_or(80);
    let path = url.path_and_query().map_or("/", |p| p.as_str()).to_owned();

    let request = http::Request::builder()
        .uri(path)
        .header(http::header::HOST, authority.as_str());
    let (request, body) = match (method, rest) {
        ("put", [file, headers @ ..]) => {
            let bytes =
                Bytes::from(std::fs::read(file).with_context(|| format!("reading {file}"))?);
            let mut request = request
                .method(http::Method::PUT)
                .header(http::header::CONTENT_LENGTH, bytes.len());
            for pair in headers.chunks(2) {
                let [flag, header] = pair else {
                    bail!("-H needs a value");
                };
                let (name, value) = header
                    .split_once(':')
                    .filter(|_| flag == "-H")
                    .with_context(|| format!("expected -H 'Name: value', got {flag} {header}"))?;
                request = request.header(name.trim(), value.trim());
            }
            (request, Some(bytes))
        }
        ("get", []) => (request.method(http::Method::GET), None),
        _ => bail!("usage: http_client put <url> <file> [-H 'Name: value']... | get <url>"),
    };
    let sent = body.as_ref().map_or(0, Bytes::len);

    let start = Instant::now();
    let stream = TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let response = match body {
        Some(bytes) => {
            let frames = (0..bytes.len()).step_by(FRAME_BYTES).map(move |start| {
                let end = (start + FRAME_BYTES).min(bytes.len());
                Ok::<_, std::convert::Infallible>(Frame::data(bytes.slice(start..end)))
            });
            let body = StreamBody::new(futures_util::stream::iter(frames));
            sender.send_request(request.body(body.boxed())?).await?
        }
        None => {
            let body = Empty::<Bytes>::new().map_err(|never| match never {});
            sender.send_request(request.body(body.boxed())?).await?
        }
    };
    let status = response.status().as_u16();
    let mut received = 0usize;
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            received += data.len();
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let bytes = if method == "put" { sent } else { received };
    println!("{status} {seconds:.6} {bytes}");
    Ok(())
}
