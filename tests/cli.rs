//! The `satchel` binary as an operator meets it: `--help`, and a bad
//! configuration answered with one clear line and a non-zero exit.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn satchel(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_satchel"))
        .args(args)
        .env_remove("SATCHEL_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A bad config must fail at once; a hang is a failure too.
    for _ in 0..100 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    panic!("satchel {args:?} did not exit within 10 s");
}

fn config(dir: &Path, listen: &str, storage: &str, max_file_size: &str) -> String {
    format!(
        r#"
[component]
jid = "upload.localhost"
server = "127.0.0.1:1"
secret = "s"
[http]
listen = "{listen}"
public_url = "http://127.0.0.1:5050"
[storage]
path = "{storage}"
key_file = "{key}"
[limits]
max_file_size = {max_file_size}
"#,
        key = dir.join("master.key").display()
    )
}

/// Runs satchel on `text` and returns its stderr, asserting a failed exit.
fn failure_for(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("satchel.toml");
    std::fs::write(&path, text).unwrap();
    let output = satchel(&["--config", path.to_str().unwrap()]);
    assert!(!output.status.success(), "satchel accepted:\n{text}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one line expected:\n{stderr}"
    );
    stderr
}

#[test]
fn help_documents_every_key() {
    let output = satchel(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for key in [
        "jid",
        "server",
        "secret",
        "listen",
        "public_url",
        "cors_allow_origin",
        "path",
        "key_file",
        "max_file_size",
        "slot_lifetime_secs",
        "daily_upload_bytes",
        "user_storage_bytes",
        "min_free_disk_percent",
        "allowed_domains",
        "message_secs",
        "ephemeral_secs",
        "permanent_secs",
        "gc_interval_secs",
        "--config",
        "SATCHEL_CONFIG",
        "keepalive_secs",
        "reconnect_max_delay_secs",
        "header_timeout_secs",
        "body_idle_timeout_secs",
        "max_concurrent_uploads",
        "max_connections",
        "cache_max_age_secs",
        "tls_cert",
        "tls_key",
        "previous_key_files",
        "cache_capacity_bytes",
        "slot_requests_per_minute",
        "abandoned_upload_secs",
        "max_recipients",
        "relays_per_minute",
        "retry_max_delay_secs",
        "bounce_window_secs",
        "thumbnail_max_side",
        "delete_after_download",
        "show_jids",
    ] {
        assert!(help.contains(key), "--help does not mention {key}");
    }
    for section in [
        "component",
        "http",
        "storage",
        "limits",
        "retention",
        "relay",
        "logging",
    ] {
        assert!(help.contains(&format!("  [{section}]")), "no [{section}]");
    }
    assert!(
        help.contains("per-user bytes of uploads completed per UTC day (10 x max_file_size)"),
        "{help}"
    );
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), "127.0.0.1:0", "/tmp/x", "100") + "max_fiel_size = 3\n";
    let stderr = failure_for(&text);
    assert!(
        stderr.contains("(`max_fiel_size = 3`): unknown key `limits.max_fiel_size`"),
        "{stderr}"
    );
}

#[test]
fn missing_config_file_is_named() {
    let output = satchel(&["--config", "/nonexistent/satchel.toml"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("/nonexistent/satchel.toml"), "{stderr}");
}

#[test]
fn missing_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), "127.0.0.1:0", "/tmp/x", "100").replace("secret = \"s\"\n", "");
    let stderr = failure_for(&text);
    assert!(stderr.contains("secret"), "{stderr}");
}

#[test]
fn unparsable_value_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = failure_for(&config(dir.path(), "127.0.0.1:0", "/tmp/x", "\"lots\""));
    assert!(stderr.contains("max_file_size"), "{stderr}");
    let stderr = failure_for(&config(dir.path(), "not-an-address", "/tmp/x", "100"));
    assert!(stderr.contains("http.listen"), "{stderr}");
}

#[test]
fn unusable_storage_path_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let storage = file.join("store");
    let stderr = failure_for(&config(
        dir.path(),
        "127.0.0.1:0",
        storage.to_str().unwrap(),
        "100",
    ));
    assert!(stderr.contains("store"), "{stderr}");
}

#[test]
fn port_already_taken_is_named() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("store");
    let stderr = failure_for(&config(
        dir.path(),
        &address,
        storage.to_str().unwrap(),
        "100",
    ));
    assert!(
        stderr.contains(&address) && stderr.contains("http.listen"),
        "{stderr}"
    );
}

#[test]
fn a_master_key_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let storage = dir.path().join("store");
    let stderr = failure_for(&config(
        dir.path(),
        "127.0.0.1:0",
        storage.to_str().unwrap(),
        "100",
    ));
    assert!(
        stderr.contains("master.key") && stderr.contains("chmod"),
        "{stderr}"
    );
}
