//! A minimal blocking HTTP/1.0 client over `std::net`, for the benchmark and the tests: one
//! request per connection, the body delimited by the close, server-sent events read line by line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

/// A response: status, headers (lower-cased names) and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl HttpResponse {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> std::io::Result<BufReader<TcpStream>> {
    let mut s = TcpStream::connect(addr)?;
    let mut head =
        format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n", body.len());
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    Ok(BufReader::new(s))
}

fn read_head(r: &mut BufReader<TcpStream>) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok((status, headers))
}

/// Sends a request and reads the whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    let mut r = send(addr, method, path, body, headers)?;
    let (status, headers) = read_head(&mut r)?;
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes)?;
    Ok(HttpResponse { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() })
}

/// POSTs `body` and calls `on_data` with each server-sent event's data (`[DONE]` included);
/// returns the status.
pub fn stream(
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
    on_data: &mut dyn FnMut(&str),
) -> std::io::Result<u16> {
    let mut r = send(addr, "POST", path, body.to_string().as_bytes(), &[])?;
    let (status, _) = read_head(&mut r)?;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        if let Some(data) = line.trim_end_matches(['\r', '\n']).strip_prefix("data:") {
            on_data(data.trim_start());
        }
    }
    Ok(status)
}
