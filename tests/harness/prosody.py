"""Prosody 0.12 on loopback ports in a temporary directory, for the tests.

The config is rendered from examples/servers/prosody.cfg.lua, the file the
documentation tells operators to copy, so that the example cannot rot."""

import shutil

from . import C2S_STANZA_SIZE_LIMIT, COMPONENT_JID, DOMAIN, USERS
from .util import (
    EXAMPLES_SERVERS, Process, chown_tree, free_port, make_tempdir, render_template,
    run, tail, user_env, as_user, variant_name, wait_port, wait_port_closed,
)

TEMPLATE = EXAMPLES_SERVERS / "prosody.cfg.lua"
USER = "prosody"


class ProsodyServer:
    kind = "prosody"

    def __init__(self, secret="satchel-test-secret", users=None, workdir=None,
                 privileged=False, offline=True, presence="managed_entity",
                 c2s_stanza_size_limit=C2S_STANZA_SIZE_LIMIT, config_hook=None):
        """privileged: load mod_privilege and grant the component XEP-0356 message
        ("outgoing") and presence permission (`presence`: "managed_entity", or
        "roster", which Prosody grants only together with roster "get").
        offline: keep mod_offline (Prosody's default); False disables it.
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
        self.dir = workdir or make_tempdir("satchel-prosody-")
        self.c2s_port = free_port()
        self.component_port = free_port()
        self.config_path = self.dir / "prosody.cfg.lua"
        self.log_path = self.dir / "log" / "prosody.log"
        self.console_log = self.dir / "log" / "console.log"
        self.process = None
        self._configured = False

    # -- setup ---------------------------------------------------------------
    def _configure(self):
        for sub in ("data", "log", "run", "certs"):
            (self.dir / sub).mkdir(exist_ok=True)
        text = render_template(TEMPLATE, {
            "RUN_DIR": self.dir / "run",
            "DATA_DIR": self.dir / "data",
            "CERT_DIR": self.dir / "certs",
            "LOG_DIR": self.dir / "log",
            "C2S_PORT": self.c2s_port,
            "COMPONENT_PORT": self.component_port,
            "DOMAIN": self.domain,
            "COMPONENT_JID": self.component_jid,
            "COMPONENT_SECRET": self.secret,
            "C2S_REQUIRE_ENCRYPTION": "false",
            "ALLOW_UNENCRYPTED_PLAIN_AUTH": "true",
            "C2S_STANZA_SIZE_LIMIT": self.c2s_stanza_size_limit,
        }, sections={"privilege": self.privileged, "no-offline": not self.offline})
        if self.privileged and self.presence != "managed_entity":
            old = 'presence = "managed_entity" }'
            assert old in text, "privileged_entities line changed in the template"
            extra = 'roster = "get"; ' if self.presence == "roster" else ""
            text = text.replace(old, f'{extra}presence = "{self.presence}" }}')
        if self.config_hook is not None:
            text = self.config_hook(text, self)
        self.config_path.write_text(text)
        chown_tree(self.dir, USER)
        env = user_env(USER, self.dir)
        for name, password in self.users.items():
            # prosodyctl drops privileges to the prosody user by itself.
            run(["prosodyctl", "--config", self.config_path, "register", name,
                 self.domain, password], env=env, timeout=60)
        chown_tree(self.dir, USER)
        self._configured = True

    # -- lifecycle -------------------------------------------------------------
    def start(self, timeout=30):
        if not self._configured:
            self._configure()
        argv = as_user(USER, ["prosody", "--config", str(self.config_path), "-F"])
        self.process = Process(argv, self.console_log, env=user_env(USER, self.dir),
                               cwd=self.dir, name="prosody").start()
        try:
            for port in (self.c2s_port, self.component_port):
                wait_port(port, timeout=timeout, proc=self.process, what="prosody",
                          log=self.console_log)
        except Exception:
            self.stop()
            raise RuntimeError(f"prosody failed to start\n{self.logs()}")
        return self

    def stop(self):
        if self.process is not None:
            self.process.stop()
            self.process = None
        for port in (self.c2s_port, self.component_port):
            wait_port_closed(port, timeout=5)

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self, lines=40):
        return "\n".join([tail(self.console_log, lines), tail(self.log_path, lines)])

    @property
    def variant(self):
        return variant_name(self.privileged, self.offline)

    def __repr__(self):
        return (f"<ProsodyServer {self.variant} c2s=127.0.0.1:{self.c2s_port} "
                f"component=127.0.0.1:{self.component_port} dir={self.dir}>")
