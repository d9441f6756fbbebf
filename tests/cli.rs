//! The `satchel` binary as an operator meets it: `--help`, a bad
//! configuration answered with one clear line and a non-zero exit,
//! `satchel check-config`, and the readiness it reports to systemd.

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

// --- satchel check-config ---------------------------------------------------------------

/// `satchel check-config --config` on `text` written in `dir`: the exit
/// code, stdout and stderr's lines.
fn check_config_in(dir: &Path, text: &[u8]) -> (i32, String, Vec<String>) {
    let path = dir.join("satchel.toml");
    std::fs::write(&path, text).unwrap();
    check_config_path(&path)
}

fn check_config_path(path: &Path) -> (i32, String, Vec<String>) {
    let output = satchel(&["check-config", "--config", path.to_str().unwrap()]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines = stderr.lines().map(str::to_owned).collect();
    (output.status.code().unwrap(), stdout, lines)
}

/// The problems check-config reports, asserting exit 2 and an empty stdout.
fn problems_in(dir: &Path, text: &str) -> Vec<String> {
    let (code, stdout, lines) = check_config_in(dir, text.as_bytes());
    assert_eq!(code, 2, "check-config accepted:\n{text}\n{stdout}");
    assert_eq!(stdout, "");
    assert!(!lines.is_empty());
    lines
}

fn world_readable_key(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let key = dir.join("master.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn check_config_accepts_a_good_config_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data").join("store");
    let text = config(dir.path(), "127.0.0.1:0", storage.to_str().unwrap(), "100");
    let (code, stdout, lines) = check_config_in(dir.path(), text.as_bytes());
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(
        stdout,
        format!(
            "config OK: upload.localhost, http on 127.0.0.1:0, store {}\n",
            storage.display()
        )
    );
    assert!(lines.is_empty(), "{lines:?}");
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["satchel.toml"], "check-config created files");
}

#[test]
fn check_config_accepts_the_config_of_a_running_store() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("store");
    std::fs::create_dir(&storage).unwrap();
    std::fs::write(storage.join("db"), b"data").unwrap();
    let key = dir.path().join("master.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
    let text = config(dir.path(), "127.0.0.1:0", storage.to_str().unwrap(), "100");
    let (code, stdout, lines) = check_config_in(dir.path(), text.as_bytes());
    assert_eq!(code, 0, "{lines:?}");
    assert!(stdout.starts_with("config OK: "), "{stdout}");
}

#[test]
fn check_config_names_a_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), "127.0.0.1:0", "/tmp/x", "100") + "max_fiel_size = 3\n";
    let lines = problems_in(dir.path(), &text);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("unknown key `limits.max_fiel_size`"),
        "{lines:?}"
    );
    let text = config(dir.path(), "127.0.0.1:0", "/tmp/x", "100").replace("127.0.0.1:1", "h:x");
    let lines = problems_in(dir.path(), &text);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("component.server: expected HOST:PORT"),
        "{lines:?}"
    );
}

#[test]
fn check_config_refuses_a_key_file_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    world_readable_key(dir.path());
    let storage = dir.path().join("store");
    let text = config(dir.path(), "127.0.0.1:0", storage.to_str().unwrap(), "100");
    let lines = problems_in(dir.path(), &text);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("storage.key_file: "), "{lines:?}");
    assert!(
        lines[0].contains("mode 0644") && lines[0].contains("chmod 600"),
        "{lines:?}"
    );
    // Also once the store exists (start-up's own check runs then).
    std::fs::create_dir(&storage).unwrap();
    let lines = problems_in(dir.path(), &text);
    assert!(lines[0].contains("chmod 600"), "{lines:?}");
}

#[test]
fn check_config_names_a_port_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("store");
    let text = config(dir.path(), &address, storage.to_str().unwrap(), "100");
    let lines = problems_in(dir.path(), &text);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("http.listen: cannot listen on {address}")),
        "{lines:?}"
    );
}

#[test]
fn check_config_names_a_metrics_port_in_use_or_shared_with_http() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("store");
    let text = config(dir.path(), "127.0.0.1:0", storage.to_str().unwrap(), "100");
    let lines = problems_in(
        dir.path(),
        &format!("{text}\n[metrics]\nlisten = \"{address}\"\n"),
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("metrics.listen: cannot listen on {address}")),
        "{lines:?}"
    );

    let text = config(dir.path(), &address, storage.to_str().unwrap(), "100");
    drop(taken);
    let lines = problems_in(
        dir.path(),
        &format!("{text}\n[metrics]\nlisten = \"{address}\"\n"),
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("metrics.listen: must differ from http.listen"),
        "{lines:?}"
    );
}

#[test]
fn check_config_names_a_store_under_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let storage = file.join("store");
    let text = config(dir.path(), "127.0.0.1:0", storage.to_str().unwrap(), "100");
    let lines = problems_in(dir.path(), &text);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("storage.path: "), "{lines:?}");
    assert!(lines[0].contains("a-file is not a directory"), "{lines:?}");
    // A path with a newline and a NUL in it still makes one line.
    let text = config(dir.path(), "127.0.0.1:0", "STORE", "100")
        .replace("STORE", &format!("{}/new\\nline\\u0000", file.display()));
    let lines = problems_in(dir.path(), &text);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("new\\nline"), "{lines:?}");
}

#[test]
fn check_config_names_missing_and_misplaced_keys() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("store");
    // A store with data and no key: a new key could not read it.
    std::fs::create_dir(&storage).unwrap();
    std::fs::write(storage.join("db"), b"data").unwrap();
    let text = config(dir.path(), "127.0.0.1:0", storage.to_str().unwrap(), "100");
    let lines = problems_in(dir.path(), &text);
    assert!(
        lines[0].starts_with("storage.key_file: ") && lines[0].contains("restore the key file"),
        "{lines:?}"
    );
    // An earlier key that is not there.
    let text = text.replace(
        "[limits]",
        "previous_key_files = [\"/nonexistent/old.key\"]\n[limits]",
    );
    let lines = problems_in(dir.path(), &text);
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("storage.previous_key_files: ")
                && line.contains("/nonexistent/old.key")),
        "{lines:?}"
    );
    // A key inside the store.
    let inside = storage.join("master.key");
    let text = config(dir.path(), "127.0.0.1:0", storage.to_str().unwrap(), "100").replace(
        &dir.path().join("master.key").display().to_string(),
        inside.to_str().unwrap(),
    );
    let lines = problems_in(dir.path(), &text);
    assert!(lines[0].contains("inside the store"), "{lines:?}");
    // A key in a directory that does not exist, for a new store.
    let new_store = dir.path().join("new-store");
    let text = config(
        dir.path(),
        "127.0.0.1:0",
        new_store.to_str().unwrap(),
        "100",
    )
    .replace(
        &dir.path().join("master.key").display().to_string(),
        "/nonexistent/dir/master.key",
    );
    let lines = problems_in(dir.path(), &text);
    assert!(
        lines[0].starts_with("storage.key_file: ") && lines[0].contains("does not exist"),
        "{lines:?}"
    );
}

#[test]
fn check_config_reports_every_problem_on_its_own_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    world_readable_key(dir.path());
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let storage = file.join("store");
    let text = config(dir.path(), &address, storage.to_str().unwrap(), "100");
    let lines = problems_in(dir.path(), &text);
    let keys: Vec<&str> = lines
        .iter()
        .map(|line| line.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["storage.path", "storage.key_file", "http.listen"],
        "{lines:?}"
    );
}

#[test]
fn check_config_survives_hostile_files() {
    let dir = tempfile::tempdir().unwrap();
    let answer = |path: &Path| {
        let (code, stdout, lines) = check_config_path(path);
        assert_eq!(code, 2, "{}", path.display());
        assert_eq!(stdout, "");
        assert_eq!(lines.len(), 1, "{lines:?}");
        lines.into_iter().next().unwrap()
    };
    // A directory.
    assert!(answer(dir.path()).contains("not a regular file"));
    // A FIFO: refused without waiting for a writer.
    let fifo = dir.path().join("fifo");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    assert!(answer(&fifo).contains("not a regular file"));
    // A huge file.
    let huge = dir.path().join("huge.toml");
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(1 << 30).unwrap();
    assert!(answer(&huge).contains("more than a configuration's"));
    // Bytes that are not UTF-8, and NUL bytes.
    let (code, _, lines) = check_config_in(dir.path(), b"\xff\xfe[component]\n\xc3");
    assert_eq!(code, 2);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("not UTF-8"), "{lines:?}");
    let (code, _, lines) = check_config_in(dir.path(), b"[component]\0\0\n");
    assert_eq!(code, 2);
    assert_eq!(lines.len(), 1, "{lines:?}");
    // A missing file.
    assert!(answer(Path::new("/nonexistent/satchel.toml")).contains("/nonexistent/satchel.toml"));
}

#[test]
fn the_service_refuses_a_huge_or_binary_config_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.toml");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let output = satchel(&["--config", huge.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("larger than"), "{stderr}");
    let stderr = failure_for("\u{feff}[component]\n\u{0}");
    assert!(stderr.contains("satchel.toml"), "{stderr}");
}

// --- readiness (systemd Type=notify) --------------------------------------------------

#[test]
fn satchel_tells_systemd_it_is_ready_then_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify");
    let listener = UnixDatagram::bind(&socket).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let storage = dir.path().join("store");
    let path = dir.path().join("satchel.toml");
    std::fs::write(
        &path,
        config(dir.path(), "127.0.0.1:0", storage.to_str().unwrap(), "100"),
    )
    .unwrap();
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_satchel"))
            .args(["--config", path.to_str().unwrap()])
            .env_remove("SATCHEL_CONFIG")
            .env("NOTIFY_SOCKET", &socket)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut buffer = [0u8; 256];
    let received = |buffer: &mut [u8]| {
        let len = listener.recv(buffer).expect("a notification within 30 s");
        String::from_utf8(buffer[..len].to_vec()).unwrap()
    };
    let ready = received(&mut buffer);
    // Ready means the start-up checks are done: the store and key exist.
    assert!(ready.lines().any(|line| line == "READY=1"), "{ready:?}");
    assert!(storage.is_dir() && dir.path().join("master.key").is_file());
    // SAFETY: kill only sends a signal to the child we started.
    assert_eq!(
        unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let stopping = received(&mut buffer);
    assert!(
        stopping.lines().any(|line| line == "STOPPING=1"),
        "{stopping:?}"
    );
    assert!(child.0.wait().unwrap().success());
}

/// A child process killed if the test fails before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

// --- the example configuration (examples/systemd/satchel.toml) ------------------------

fn example_config() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/systemd/satchel.toml");
    std::fs::read_to_string(path).unwrap()
}

/// The `(section, key)` pairs `satchel --help` documents.
fn keys_in_help() -> Vec<(String, String)> {
    let help = String::from_utf8(satchel(&["--help"]).stdout).unwrap();
    let mut section = None;
    let mut keys = Vec::new();
    for line in help
        .lines()
        .skip_while(|line| !line.starts_with("CONFIGURATION"))
    {
        if let Some(rest) = line.strip_prefix("  [") {
            section = rest.split(']').next().map(str::to_owned);
        } else if let Some(rest) = line.strip_prefix("    ") {
            // A key's line; its help's continuation lines are indented further.
            if !rest.starts_with(' ') {
                let key = rest.split_whitespace().next().unwrap();
                keys.push((section.clone().unwrap(), key.to_owned()));
            }
        }
    }
    keys
}

#[test]
fn the_example_config_shows_every_key_of_the_help() {
    let example = example_config();
    let keys = keys_in_help();
    for sure in [("component", "jid"), ("logging", "show_jids")] {
        let sure = (sure.0.to_owned(), sure.1.to_owned());
        assert!(keys.contains(&sure), "the help's keys misread: {keys:?}");
    }
    let mut section = String::new();
    let mut written = Vec::new();
    for line in example.lines() {
        if let Some(rest) = line.strip_prefix('[') {
            section = rest.trim_end_matches(']').to_owned();
        } else if let Some((key, _)) = line.trim_start_matches("# ").split_once(" = ") {
            written.push((section.clone(), key.to_owned()));
        }
    }
    for key in &keys {
        assert!(written.contains(key), "the example lacks {key:?}");
    }
    for key in &written {
        assert!(
            keys.contains(key),
            "the example has {key:?}, unknown to --help"
        );
    }
}

#[test]
fn check_config_accepts_the_example_config_with_its_paths_in_a_temp_dir() {
    let dir = tempfile::tempdir().unwrap();
    let example = example_config()
        .replace("/var/lib/satchel", dir.path().to_str().unwrap())
        .replace("127.0.0.1:5050", "127.0.0.1:0");
    let (code, stdout, lines) = check_config_in(dir.path(), example.as_bytes());
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(
        stdout,
        format!(
            "config OK: upload.example.org, http on 127.0.0.1:0, store {}/store\n",
            dir.path().display()
        )
    );
    // Each commented-out default is valid as written.
    let uncommented: String = example
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(setting) if setting.contains(" = ") => format!("{setting}\n"),
            _ => format!("{line}\n"),
        })
        .collect();
    assert_ne!(uncommented, example);
    // Its HTTPS pair too, once the files are there.
    let cert = write_in(dir.path(), "fullchain.pem", TLS_CERT.as_bytes());
    let key = write_in(dir.path(), "privkey.pem", TLS_KEY.as_bytes());
    let uncommented = uncommented
        .replace("/etc/satchel/tls/fullchain.pem", cert.to_str().unwrap())
        .replace("/etc/satchel/tls/privkey.pem", key.to_str().unwrap());
    let (code, _, lines) = check_config_in(dir.path(), uncommented.as_bytes());
    assert_eq!(code, 0, "{lines:?}");
}

// --- check-config and the HTTPS pair ----------------------------------------------------

/// The throwaway pairs of the TLS unit tests (P-256, CN=localhost).
const TLS_CERT: &str = include_str!("../src/http/testdata/cert.pem");
const TLS_KEY: &str = include_str!("../src/http/testdata/key.pem");
const OTHER_TLS_KEY: &str = include_str!("../src/http/testdata/other-key.pem");

/// check-config on a good config whose `[http]` names `cert` and `key`.
fn check_tls_pair(dir: &Path, cert: &Path, key: &Path) -> (i32, String, Vec<String>) {
    let storage = dir.join("store");
    let text = config(dir, "127.0.0.1:0", storage.to_str().unwrap(), "100").replace(
        "[storage]",
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n[storage]",
            cert.display(),
            key.display()
        ),
    );
    check_config_in(dir, text.as_bytes())
}

/// Writes `bytes` to `name` in `dir`.
fn write_in(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn check_config_accepts_a_matching_tls_pair() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_in(dir.path(), "cert.pem", TLS_CERT.as_bytes());
    let key = write_in(dir.path(), "key.pem", TLS_KEY.as_bytes());
    let (code, stdout, lines) = check_tls_pair(dir.path(), &cert, &key);
    assert_eq!(code, 0, "{lines:?}");
    assert!(stdout.starts_with("config OK: "), "{stdout}");
}

#[test]
fn check_config_names_a_missing_tls_file() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_in(dir.path(), "cert.pem", TLS_CERT.as_bytes());
    let key = write_in(dir.path(), "key.pem", TLS_KEY.as_bytes());
    let missing = dir.path().join("gone.pem");

    let (code, _, lines) = check_tls_pair(dir.path(), &missing, &key);
    assert_eq!(code, 2);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!(
            "http.tls_cert: {}: cannot open",
            missing.display()
        )),
        "{lines:?}"
    );

    let (code, _, lines) = check_tls_pair(dir.path(), &cert, &missing);
    assert_eq!(code, 2);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("http.tls_key: {}: cannot open", missing.display())),
        "{lines:?}"
    );
}

#[test]
fn check_config_names_an_unreadable_tls_key() {
    // A directory opens but cannot be read (file modes do not stop root).
    let dir = tempfile::tempdir().unwrap();
    let cert = write_in(dir.path(), "cert.pem", TLS_CERT.as_bytes());
    let key = dir.path().join("a-directory");
    std::fs::create_dir(&key).unwrap();
    let (code, _, lines) = check_tls_pair(dir.path(), &cert, &key);
    assert_eq!(code, 2);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("http.tls_key: "), "{lines:?}");
    assert!(lines[0].contains("cannot read"), "{lines:?}");
}

#[test]
fn check_config_names_a_key_that_is_not_the_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_in(dir.path(), "cert.pem", TLS_CERT.as_bytes());
    let key = write_in(dir.path(), "other-key.pem", OTHER_TLS_KEY.as_bytes());
    let (code, stdout, lines) = check_tls_pair(dir.path(), &cert, &key);
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert_eq!(
        lines,
        [format!(
            "http.tls_key: {}: is not the key of the certificate in {}",
            key.display(),
            cert.display()
        )]
    );
}

#[test]
fn check_config_survives_hostile_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_in(dir.path(), "cert.pem", TLS_CERT.as_bytes());
    let key = write_in(dir.path(), "key.pem", TLS_KEY.as_bytes());
    let hostile: [&[u8]; 4] = [
        b"",
        b"\xff\xfe\0\0-----BEGIN CERTIFICATE-----\n\xc3\n",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
    ];
    for bytes in hostile {
        let bad = write_in(dir.path(), "bad.pem", bytes);
        for (cert, key, named) in [
            (&bad, &key, "http.tls_cert: "),
            (&cert, &bad, "http.tls_key: "),
        ] {
            let (code, _, lines) = check_tls_pair(dir.path(), cert, key);
            assert_eq!(code, 2, "{bytes:?} accepted");
            assert_eq!(lines.len(), 1, "{bytes:?}: {lines:?}");
            assert!(lines[0].starts_with(named), "{bytes:?}: {lines:?}");
        }
    }
}

/// A loopback port nothing listens on (its listener is closed at once).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn check_config_names_a_bucket_that_does_not_answer_without_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("store");
    let closed = closed_port();
    let text = config(dir.path(), "127.0.0.1:0", storage.to_str().unwrap(), "100")
        .replace("[limits]", "backend = \"s3\"\n[limits]")
        + &format!(
            "[storage.s3]\nendpoint = \"http://127.0.0.1:{closed}\"\nregion = \"garage\"\n\
             bucket = \"satchel\"\naccess_key_id = \"GK1\"\nsecret_access_key = \"hidden-secret\"\n"
        );
    let lines = problems_in(dir.path(), &text);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!(
            "storage.s3: object store: bucket satchel at http://127.0.0.1:{closed} ([storage.s3]) does not answer"
        )),
        "{lines:?}"
    );
    assert!(!lines[0].contains("hidden-secret"));
}

#[test]
fn check_config_names_a_database_that_does_not_answer_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("store");
    let closed = closed_port();
    let text = config(dir.path(), "127.0.0.1:0", storage.to_str().unwrap(), "100")
        + &format!(
            "[metadata]\nbackend = \"postgres\"\n\
             url = \"postgres://satchel:hidden-password@127.0.0.1:{closed}/satchel\"\n\
             [cluster]\ninstance = \"a\"\n"
        );
    let lines = problems_in(dir.path(), &text);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("metadata.url: database: connecting: error connecting to server"),
        "{lines:?}"
    );
    assert!(!lines[0].contains("new object"), "{lines:?}");
    assert!(!lines[0].contains("hidden-password"), "{lines:?}");
}

#[test]
fn check_config_names_a_database_client_key_that_is_not_its_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("store");
    let (cert, key) = (dir.path().join("client.crt"), dir.path().join("client.key"));
    std::fs::write(&cert, TLS_CERT).unwrap();
    std::fs::write(&key, OTHER_TLS_KEY).unwrap();
    let text = config(dir.path(), "127.0.0.1:0", storage.to_str().unwrap(), "100")
        + &format!(
            "[metadata]\nbackend = \"postgres\"\n\
             url = \"postgres://satchel:pw@127.0.0.1:{}/satchel?sslmode=require\"\n\
             client_cert_file = \"{}\"\nclient_key_file = \"{}\"\n\
             [cluster]\ninstance = \"a\"\n",
            closed_port(),
            cert.display(),
            key.display()
        );
    let lines = problems_in(dir.path(), &text);
    assert_eq!(
        lines,
        [format!(
            "metadata.client_key_file: {}: is not the key of the certificate in {}",
            key.display(),
            cert.display()
        )]
    );
}

#[test]
fn migrate_names_a_configuration_it_cannot_read_and_copies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("store");
    let target = write_in(
        dir.path(),
        "target.toml",
        config(dir.path(), "127.0.0.1:0", storage.to_str().unwrap(), "100").as_bytes(),
    );
    let source = write_in(dir.path(), "source.toml", b"[storage\npath = ");
    for from in [source.to_str().unwrap(), "/nonexistent/satchel.toml"] {
        let output = satchel(&[
            "migrate",
            "--from",
            from,
            "--config",
            target.to_str().unwrap(),
        ]);
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with(&format!("satchel migrate: {from}: ")),
            "{stderr}"
        );
        assert!(!storage.exists(), "nothing is created before both are read");
    }
}
