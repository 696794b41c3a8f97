//! The binary's configuration errors and exit codes (no Iggy needed).

use libtest_mimic::{Failed, Trial};
use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Command, Stdio},
};

const BINARY: &str = env!("CARGO_BIN_EXE_iggy-grpc");

pub fn tests() -> Vec<Trial> {
    vec![
        Trial::test(
            "cli::bad_listen_address_exits_78_with_one_line",
            bad_listen_address,
        ),
        Trial::test("cli::bad_connection_string_exits_78", bad_connection_string),
        Trial::test("cli::listen_address_in_use_exits_69", address_in_use),
        Trial::test(
            "cli::embedded_without_binary_names_the_variable",
            embedded_without_binary,
        ),
        Trial::test("cli::bad_api_keys_exit_78_naming_the_entry", bad_api_keys),
        Trial::test("cli::unusable_tls_files_exit_78", bad_tls_files),
        Trial::test("cli::metrics_address_in_use_exits_69", metrics_in_use),
        Trial::test(
            "cli::text_logs_to_a_pipe_have_no_colour_codes",
            plain_text_logs,
        ),
        Trial::test(
            "cli::a_stream_refused_by_http2_is_logged_and_counted",
            http2_refusal_logged_and_counted,
        ),
    ]
}

fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .env_remove("IGGY_CONNECTION_STRING")
        .env_remove("IGGY_EMBEDDED")
        .env_remove("IGGY_SERVER_BIN")
        // No test may depend on a fixed port being free: the metrics
        // endpoint is off unless a test turns it on.
        .env("IGGY_GRPC_METRICS_LISTEN", "");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run iggy-grpc")
}

fn bad_listen_address() -> Result<(), Failed> {
    let output = run(&["--listen", "not-an-address"], &[]);
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("--listen"), "names the flag: {stderr}");
    Ok(())
}

fn bad_connection_string() -> Result<(), Failed> {
    let output = run(
        &[
            "--listen",
            "127.0.0.1:0",
            "--iggy-url",
            "iggy://nocredentials:8090",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("connection string"), "{stderr}");
    Ok(())
}

fn address_in_use() -> Result<(), Failed> {
    let taken = TcpListener::bind("127.0.0.1:0")?;
    let address = taken.local_addr()?.to_string();
    let output = run(&["--listen", &address], &[]);
    assert_eq!(output.status.code(), Some(69));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&address), "{stderr}");
    Ok(())
}

fn embedded_without_binary() -> Result<(), Failed> {
    let output = run(
        &["--listen", "127.0.0.1:0", "--embedded"],
        &[("PATH", "/nonexistent")],
    );
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("IGGY_SERVER_BIN"), "{stderr}");
    Ok(())
}

fn bad_api_keys() -> Result<(), Failed> {
    let output = run(
        &["--listen", "127.0.0.1:0"],
        &[("IGGY_GRPC_API_KEYS", "ci:short:publish")],
    );
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("#1 of IGGY_GRPC_API_KEYS"), "{stderr}");
    assert!(
        !stderr.contains("short:"),
        "the secret is not echoed: {stderr}"
    );
    Ok(())
}

fn bad_tls_files() -> Result<(), Failed> {
    let missing = run(
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ],
        &[],
    );
    assert_eq!(missing.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("/nonexistent/cert.pem"), "{stderr}");
    let half = run(&["--tls-cert", "cert.pem"], &[]);
    assert_eq!(half.status.code(), Some(78), "a certificate needs its key");
    Ok(())
}

fn metrics_in_use() -> Result<(), Failed> {
    let taken = TcpListener::bind("127.0.0.1:0")?;
    let address = taken.local_addr()?.to_string();
    let output = run(
        &["--listen", "127.0.0.1:0", "--metrics-listen", &address],
        &[],
    );
    assert_eq!(output.status.code(), Some(69));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&address), "{stderr}");
    Ok(())
}

fn plain_text_logs() -> Result<(), Failed> {
    // No Iggy listens on the port the listener just gave back: the gateway
    // still logs that it listens, then keeps retrying its pool.
    let unused = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut child = Command::new(BINARY)
        .args(["--listen", "127.0.0.1:0", "--log-format", "text"])
        .args(["--iggy-url", &format!("iggy://iggy:iggy@{unused}")])
        .args(["--metrics-listen", ""])
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|line| line.contains("listening"));
    child.kill()?;
    child.wait()?;
    let line = line.ok_or("the gateway never logged that it listens")?;
    assert!(
        !line.contains('\u{1b}'),
        "a log line written to a pipe carries escape codes: {line:?}"
    );
    assert!(line.contains("INFO"), "{line}");
    Ok(())
}

/// A stream HTTP/2 resets before gRPC sees it (here grpcio's
/// `host1:port1,host2:port2` authority for a multi-address target) is logged
/// with h2's reason and counted in the metrics.
fn http2_refusal_logged_and_counted() -> Result<(), Failed> {
    let unused = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut child = Command::new(BINARY)
        .args(["--listen", "127.0.0.1:0", "--log-format", "text"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .args(["--iggy-url", &format!("iggy://iggy:iggy@{unused}")])
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let result = (|| -> Result<(), Failed> {
        // Lines arrive on a thread of their own, so a line that never comes
        // fails the test instead of hanging it.
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let line_with = |text: &str| loop {
            match lines.recv_timeout(std::time::Duration::from_secs(10)) {
                Ok(line) if line.contains(text) => return Ok::<_, Failed>(line),
                Ok(_) => {}
                Err(_) => return Err(format!("the gateway never logged {text:?}").into()),
            }
        };
        let gateway = logged_address(&line_with("listening")?)?;
        let metrics = logged_address(&line_with("serving Prometheus metrics")?)?;

        let reset = send_headers(gateway, "127.0.0.1:1,127.0.0.1:2")?;
        assert_eq!(reset, 0x1, "RST_STREAM with PROTOCOL_ERROR expected");

        let warning = line_with("HTTP/2 refused a stream")?;
        assert!(warning.contains("WARN"), "{warning}");
        assert!(warning.contains("malformed authority"), "{warning}");
        let exposition = http_get(metrics, "/metrics")?;
        assert!(
            exposition.contains("iggy_grpc_http2_refused_streams_total 1"),
            "{exposition}"
        );
        Ok(())
    })();
    child.kill()?;
    child.wait()?;
    result
}

/// The `listen=` address of a text log line.
fn logged_address(line: &str) -> Result<std::net::SocketAddr, Failed> {
    let value = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("listen="))
        .ok_or(format!("no listen= in {line:?}"))?;
    Ok(value.parse()?)
}

/// Opens an HTTP/2 connection by hand, sends one request's headers with
/// `authority` (which a client library would refuse to send), and returns
/// the error code of the RST_STREAM the gateway answers.
fn send_headers(address: std::net::SocketAddr, authority: &str) -> Result<u32, Failed> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(address)?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/iggy.grpc.v1.MessagingService/Publish"),
        (":authority", authority),
        ("content-type", "application/grpc"),
    ] {
        // HPACK: a literal field without indexing, new name, no Huffman.
        block.push(0x00);
        block.push(u8::try_from(name.len())?);
        block.extend_from_slice(name.as_bytes());
        block.push(u8::try_from(value.len())?);
        block.extend_from_slice(value.as_bytes());
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&frame_header(0, 0x4, 0, 0)); // SETTINGS
    // HEADERS, END_STREAM | END_HEADERS, stream 1.
    out.extend_from_slice(&frame_header(block.len(), 0x1, 0x5, 1));
    out.extend_from_slice(&block);
    tcp.write_all(&out)?;
    loop {
        let mut header = [0u8; 9];
        tcp.read_exact(&mut header)?;
        let length =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let mut payload = vec![0u8; length];
        tcp.read_exact(&mut payload)?;
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        match header[3] {
            0x3 if stream == 1 => {
                let code: [u8; 4] = payload.as_slice().try_into()?;
                return Ok(u32::from_be_bytes(code));
            }
            0x1 if stream == 1 => return Err("the gateway answered the request".into()),
            _ => {}
        }
    }
}

/// An HTTP/2 frame header.
fn frame_header(length: usize, kind: u8, flags: u8, stream: u32) -> [u8; 9] {
    let length = u32::try_from(length).unwrap_or(u32::MAX).to_be_bytes();
    let stream = stream.to_be_bytes();
    [
        length[1], length[2], length[3], kind, flags, stream[0], stream[1], stream[2], stream[3],
    ]
}

/// The body of a plain HTTP/1.1 GET.
fn http_get(address: std::net::SocketAddr, path: &str) -> Result<String, Failed> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(address)?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    tcp.read_to_string(&mut answer)?;
    Ok(answer)
}
