"""Small process and network helpers shared by the harness modules."""

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_SERVERS = REPO_ROOT / "examples" / "servers"
LOOPBACK = "127.0.0.1"


_handed_out = set()


def free_port(host=LOOPBACK):
    """A TCP port that was free on `host` a moment ago (the kernel picks it),
    never the same one twice in this process."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port found")


def port_open(port, host=LOOPBACK, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(port, host=LOOPBACK, timeout=30.0, proc=None, what="service", log=None):
    """Wait until something accepts TCP connections on host:port.

    Raises RuntimeError (with the log tail, if given) when `proc` exits first or
    the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port, host):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"{what} exited with code {proc.returncode} before listening on "
                f"{host}:{port}\n{tail(log) if log else ''}"
            )
        time.sleep(0.1)
    raise RuntimeError(
        f"{what} did not listen on {host}:{port} within {timeout}s\n{tail(log) if log else ''}"
    )


def wait_until(condition, timeout, what, interval=0.1):
    """Calls `condition` until it returns something true, and returns that; raises
    AssertionError(`what`, a callable or a string) when `timeout` seconds pass first.

    The tests wait for what they need to have happened, never for a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"after {timeout} s: {what() if callable(what) else what}")
        time.sleep(interval)


def wait_port_closed(port, host=LOOPBACK, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_open(port, host, timeout=0.2):
            return True
        time.sleep(0.1)
    return False


def tail(path, lines=60):
    """The last `lines` lines of a text file, or a note that it does not exist."""
    if path is None:
        return ""
    p = Path(path)
    if not p.exists():
        return f"(no file {p})"
    data = p.read_text(errors="replace").splitlines()
    head = f"----- last {min(lines, len(data))} lines of {p} -----"
    return "\n".join([head, *data[-lines:]])


def make_tempdir(prefix, owner=None):
    """A fresh directory under the system temp dir, readable by `owner` (a user name).

    pytest's own tmp_path lives under a 0700 directory owned by root, which the
    server users (prosody, ejabberd) cannot enter, hence our own mkdtemp."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    if owner is not None:
        chown_tree(d, owner)
    return d


def chown_tree(path, owner):
    if os.geteuid() != 0:
        return
    pw = pwd.getpwnam(owner)
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)


def as_user(user, argv):
    """Prefix argv so that it runs as `user` when we are root (in the same session
    and process group as its parent, unlike `su -c`)."""
    if os.geteuid() != 0 or user is None:
        return list(argv)
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *argv]
    return ["runuser", "-u", user, "--", *argv]


def user_env(user, home, extra=None):
    env = dict(os.environ)
    # Never leak an inherited Erlang/epmd setting or a stray HOME into the servers.
    for k in list(env):
        if k.startswith(("ERL_", "EJABBERD")):
            del env[k]
    env["HOME"] = str(home)
    env["USER"] = env["LOGNAME"] = user or env.get("USER", "root")
    env["LANG"] = env.get("LANG", "C.UTF-8")
    if extra:
        env.update(extra)
    return env


class Process:
    """A child process in its own process group, with output going to a log file.
    stop() signals the whole group (TERM, then KILL)."""

    def __init__(self, argv, log_path, env=None, cwd=None, name="process"):
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.env = env
        self.cwd = cwd
        self.name = name
        self.proc = None

    def start(self):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        finally:
            logf.close()
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def poll(self):
        return self.proc.poll() if self.proc else 0

    @property
    def returncode(self):
        return self.proc.returncode if self.proc else None

    def stop(self, timeout=10.0, sig=signal.SIGTERM):
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the pgid is the leader's pid
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        # Whatever is left in the group (children that ignored TERM) is killed.
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def kill(self):
        self.stop(timeout=0.1, sig=signal.SIGKILL)


def variant_name(privileged, offline):
    """A short name for a server variant, e.g. "privileged+offline"."""
    return f"{'privileged' if privileged else 'plain'}+{'offline' if offline else 'no-offline'}"


_PLACEHOLDER = re.compile(r"\{\{([A-Z0-9_]+)\}\}")
# Optional blocks in the example configs: a ruler comment line ("----------" in
# Lua, "# ----------" in YAML) naming "optional [NAME]" opens one, and one naming
# "end of optional [NAME]" closes it.
_SECTION_END = re.compile(r"^\s*(?:#\s*)?-{10}.*\bend of optional \[([a-z0-9-]+)\]")
_SECTION_BEGIN = re.compile(r"^\s*(?:#\s*)?-{10}.*\boptional \[([a-z0-9-]+)\]")


def template_sections(text):
    """The names of the optional blocks in a template's text."""
    return {m.group(1) for line in text.splitlines()
            for m in [_SECTION_BEGIN.match(line)] if m and not _SECTION_END.match(line)}


def _apply_sections(path, text, sections):
    names = template_sections(text)
    missing = sorted(names - set(sections))
    unknown = sorted(set(sections) - names)
    if missing or unknown:
        raise KeyError(f"{path}: optional blocks not chosen: {missing}; unknown: {unknown}")
    out, current = [], None
    for n, line in enumerate(text.splitlines(keepends=True), 1):
        end = _SECTION_END.match(line)
        begin = None if end else _SECTION_BEGIN.match(line)
        if begin:
            if current is not None:
                raise ValueError(f"{path}:{n}: optional [{begin.group(1)}] inside [{current}]")
            current = begin.group(1)
            keep = sections[current]
        elif end:
            if end.group(1) != current:
                raise ValueError(f"{path}:{n}: end of [{end.group(1)}] while in [{current}]")
            current = None
            if keep:
                out.append(line)
            continue
        if current is None or keep:
            out.append(line)
    if current is not None:
        raise ValueError(f"{path}: optional [{current}] is never closed")
    return "".join(out)


def render_template(path, values, sections=None):
    """Replace every {{NAME}} in the file at `path` with str(values[NAME]), and
    keep (True) or drop (False) each block marked "optional [NAME]" as
    `sections[NAME]` says.

    Every placeholder must be given a value and every optional block a choice, so
    that an edit of the example file that adds one breaks the tests instead of
    shipping a config that does not run."""
    text = _apply_sections(path, Path(path).read_text(), sections or {})
    missing = sorted({m for m in _PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise KeyError(f"{path}: no value for placeholders {missing}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def run(argv, timeout=60, env=None, cwd=None, check=True):
    """Run a command to completion, capturing output; raise with the output on failure."""
    r = subprocess.run(
        [str(a) for a in argv], stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=timeout, env=env, cwd=cwd,
    )
    if check and r.returncode != 0:
        raise RuntimeError(
            f"command failed ({r.returncode}): {' '.join(map(str, argv))}\n"
            f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
        )
    return r
