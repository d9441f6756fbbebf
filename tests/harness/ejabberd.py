"""ejabberd 23.01 on loopback ports in a temporary directory, for the tests.

The config is rendered from examples/servers/ejabberd.yml (the file operators
copy). Notes on Debian's ejabberd that shape this module:
- Debian's ejabberdctl.cfg silently overrides --config, so we pass our own
  --ctl-config (and --config-dir, so /etc/ejabberd/vm.args is not read either).
- ejabberdctl re-executes itself through `su -c` (a new session) when run as
  root; we run it as the ejabberd user with setpriv instead, so the whole node
  stays in our process group and stop() can kill it.
- epmd: we set ERL_DIST_PORT, with which ejabberdctl starts the node with
  `-erl_epmd_port PORT -start_epmd false` and its ctl clients with
  `-dist_listen false`: no epmd is started at all, and distribution listens
  on 127.0.0.1 only (INET_DIST_INTERFACE).
- Each ejabberdctl call boots an Erlang VM (1-2 s): readiness is judged by
  polling the ports, and users are registered in parallel.
"""

import secrets
import shutil
from concurrent.futures import ThreadPoolExecutor

from . import C2S_STANZA_SIZE_LIMIT, COMPONENT_JID, DOMAIN, USERS
from .util import (
    EXAMPLES_SERVERS, Process, as_user, chown_tree, free_port, make_tempdir,
    render_template, run, tail, user_env, variant_name, wait_port, wait_port_closed,
)

TEMPLATE = EXAMPLES_SERVERS / "ejabberd.yml"
USER = "ejabberd"


class EjabberdServer:
    kind = "ejabberd"

    def __init__(self, secret="satchel-test-secret", users=None, workdir=None,
                 privileged=False, offline=True, presence="managed_entity",
                 c2s_stanza_size_limit=C2S_STANZA_SIZE_LIMIT, config_hook=None):
        """privileged: load mod_privilege granting the component XEP-0356 message
        (outgoing) and presence permission (`presence`: "managed_entity" or
        "roster"). offline: load mod_offline (False: no offline storage).
        config_hook: a function (config_text, server) -> config_text applied to
        the rendered config before it is written (examples/bench/ adds its
        upload module this way); None writes the example config as it is."""
        self.domain = DOMAIN
        self.privileged = privileged
        self.offline = offline
        self.presence = presence
        self.c2s_stanza_size_limit = c2s_stanza_size_limit
        self.config_hook = config_hook
        self.component_jid = COMPONENT_JID
        self.secret = secret
        self.users = dict(USERS if users is None else users)
        self.dir = workdir or make_tempdir("satchel-ejabberd-")
        self.c2s_port = free_port()
        self.component_port = free_port()
        self.dist_port = free_port()
        self.node = f"satchel-test-{self.dist_port}@localhost"
        self.config_path = self.dir / "ejabberd.yml"
        self.ctl_config_path = self.dir / "ejabberdctl.cfg"
        self.log_dir = self.dir / "log"
        self.console_log = self.log_dir / "console.log"
        self.process = None
        self._configured = False
        self._registered = False

    def _configure(self):
        for sub in ("spool", "log", "home"):
            (self.dir / sub).mkdir(exist_ok=True)
        text = render_template(TEMPLATE, {
            "DOMAIN": self.domain,
            "C2S_PORT": self.c2s_port,
            "COMPONENT_PORT": self.component_port,
            "COMPONENT_JID": self.component_jid,
            "COMPONENT_SECRET": self.secret,
            "C2S_STARTTLS": "false",
            "C2S_MAX_STANZA_SIZE": self.c2s_stanza_size_limit,
        }, sections={"privilege": self.privileged, "offline": self.offline})
        if self.privileged and self.presence != "managed_entity":
            old = "    presence:\n      managed_entity: satchel_privileged\n"
            assert old in text, "mod_privilege presence lines changed in the template"
            new = f"    presence:\n      {self.presence}: satchel_privileged\n"
            if self.presence == "roster":
                new += "    roster:\n      get: satchel_privileged\n"
            text = text.replace(old, new)
        if self.config_hook is not None:
            text = self.config_hook(text, self)
        self.config_path.write_text(text)
        # Erlang's resolver config (what Debian ships in /etc/ejabberd/inetrc).
        (self.dir / "inetrc").write_text("{lookup,[\"file\",\"native\"]}.\n{host,{127,0,0,1}, [\"localhost\",\"hostalias\"]}.\n{file, resolv, \"/etc/resolv.conf\"}.\n")
        cookie = secrets.token_hex(16)
        self.ctl_config_path.write_text("\n".join([
            "# Written by tests/harness/ejabberd.py: replaces Debian's ejabberdctl.cfg",
            f"ERLANG_NODE={self.node}",
            "INET_DIST_INTERFACE=127.0.0.1",
            f"ERL_DIST_PORT={self.dist_port}",
            "ERL_EPMD_ADDRESS=127.0.0.1",
            f"EJABBERD_PID_PATH={self.dir}/ejabberd.pid",
            "ERL_OPTIONS=\"-env ERL_CRASH_DUMP_BYTES 0\"",
            "EJABBERD_BYPASS_WARNINGS=true",
            "",
        ]))
        # The node and its ejabberdctl clients share this cookie through HOME.
        cookie_file = self.dir / "home" / ".erlang.cookie"
        cookie_file.write_text(cookie)
        cookie_file.chmod(0o400)
        chown_tree(self.dir, USER)
        self._configured = True

    def _ctl(self, *args):
        return as_user(USER, [
            "ejabberdctl",
            "--config-dir", str(self.dir),
            "--config", str(self.config_path),
            "--ctl-config", str(self.ctl_config_path),
            "--logs", str(self.log_dir),
            "--spool", str(self.dir / "spool"),
            *args,
        ])

    def ctl(self, *args, timeout=60, check=True):
        return run(self._ctl(*args), env=user_env(USER, self.dir / "home"),
                   cwd=self.dir, timeout=timeout, check=check)

    def start(self, timeout=60):
        if not self._configured:
            self._configure()
        self.process = Process(self._ctl("foreground"), self.console_log,
                               env=user_env(USER, self.dir / "home"), cwd=self.dir,
                               name="ejabberd").start()
        try:
            for port in (self.c2s_port, self.component_port):
                wait_port(port, timeout=timeout, proc=self.process, what="ejabberd",
                          log=self.console_log)
            if not self._registered:
                with ThreadPoolExecutor(max_workers=len(self.users) or 1) as pool:
                    list(pool.map(lambda kv: self.ctl("register", kv[0], self.domain, kv[1]),
                                  self.users.items()))
                self._registered = True
        except Exception as e:
            self.stop()
            raise RuntimeError(f"ejabberd failed to start: {e}\n{self.logs()}") from e
        return self

    def stop(self):
        if self.process is not None:
            self.process.stop(timeout=15)
            self.process = None
        for port in (self.c2s_port, self.component_port, self.dist_port):
            wait_port_closed(port, timeout=5)

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self, lines=40):
        return "\n".join([tail(self.console_log, lines),
                          tail(self.log_dir / "ejabberd.log", lines),
                          tail(self.log_dir / "error.log", lines)])

    @property
    def variant(self):
        return variant_name(self.privileged, self.offline)

    def __repr__(self):
        return (f"<EjabberdServer {self.variant} c2s=127.0.0.1:{self.c2s_port} "
                f"component=127.0.0.1:{self.component_port} node={self.node} dir={self.dir}>")
