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
