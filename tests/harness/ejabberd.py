"""ejabberd 23.01 on loopback ports in a temporary directory, for the tests.

The config is rendered from examples/servers/ejabberd.yml (see
harness/xmpp_server.py). Notes on Debian's ejabberd that shape this module:
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
from concurrent.futures import ThreadPoolExecutor

from .util import EXAMPLES_SERVERS, as_user, free_port, run, user_env
from .xmpp_server import XmppServer

# Erlang's resolver config (what Debian ships in /etc/ejabberd/inetrc).
INETRC = """{lookup,["file","native"]}.
{host,{127,0,0,1}, ["localhost","hostalias"]}.
{file, resolv, "/etc/resolv.conf"}.
"""


class EjabberdServer(XmppServer):
    kind = user = "ejabberd"
    template = EXAMPLES_SERVERS / "ejabberd.yml"
    start_timeout = 60.0
    stop_timeout = 15.0

    def __init__(self, **kwargs):
        """See XmppServer."""
        super().__init__(**kwargs)
        self.dist_port = free_port()
        self.node = f"satchel-test-{self.dist_port}@localhost"
        self.ctl_config_path = self.dir / "ejabberdctl.cfg"
        self.log_dir = self.dir / "log"
        self.console_log = self.log_dir / "console.log"
        self._registered = False

    def template_values(self):
        if self.tls is None:
            certfiles, starttls = "[]", "false"
        else:
            certfiles, starttls = f'["{self.dir / "certs" / "localhost.pem"}"]', "true"
        return {"C2S_STARTTLS": starttls, "C2S_STARTTLS_REQUIRED": "false",
                "CERTFILES": certfiles, "C2S_MAX_STANZA_SIZE": self.c2s_stanza_size_limit}

    def template_sections(self):
        return {"privilege": self.privileged, "offline": self.offline}

    def grant_presence(self, text):
        old = "    presence:\n      managed_entity: satchel_privileged\n"
        assert old in text, "mod_privilege presence lines changed in the template"
        new = f"    presence:\n      {self.presence}: satchel_privileged\n"
        if self.presence == "roster":
            new += "    roster:\n      get: satchel_privileged\n"
        return text.replace(old, new)

    def configure(self):
        for sub in ("spool", "log", "home"):
            (self.dir / sub).mkdir(exist_ok=True)
        (self.dir / "inetrc").write_text(INETRC)
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
        cookie_file.write_text(secrets.token_hex(16))
        cookie_file.chmod(0o400)

    def _ctl(self, *args):
        return as_user(self.user, [
            "ejabberdctl",
            "--config-dir", str(self.dir),
            "--config", str(self.config_path),
            "--ctl-config", str(self.ctl_config_path),
            "--logs", str(self.log_dir),
            "--spool", str(self.dir / "spool"),
            *args,
        ])

    def environment(self):
        return user_env(self.user, self.dir / "home")

    def ctl(self, *args, timeout=60, check=True):
        """Runs `ejabberdctl ARGS` against this node."""
        return run(self._ctl(*args), env=self.environment(), cwd=self.dir, timeout=timeout,
                   check=check)

    def command(self):
        return self._ctl("foreground"), self.environment()

    def after_start(self):
        # Accounts are made through the running node, once.
        if self._registered:
            return
        with ThreadPoolExecutor(max_workers=len(self.users) or 1) as pool:
            list(pool.map(lambda kv: self.ctl("register", kv[0], self.domain, kv[1]),
                          self.users.items()))
        self._registered = True

    def closed_ports(self):
        return [self.c2s_port, self.component_port, self.dist_port]

    def log_files(self):
        return [self.console_log, self.log_dir / "ejabberd.log", self.log_dir / "error.log"]

    def __repr__(self):
        return f"{super().__repr__()[:-1]} node={self.node}>"
