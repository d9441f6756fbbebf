"""Prosody 0.12 on loopback ports in a temporary directory, for the tests.

The config is rendered from examples/servers/prosody.cfg.lua (see
harness/xmpp_server.py). Prosody refuses to run as root: it runs as the
prosody user, in a directory that user owns."""

from .util import EXAMPLES_SERVERS, as_user, chown_tree, run, user_env
from .xmpp_server import XmppServer


class ProsodyServer(XmppServer):
    kind = user = "prosody"
    template = EXAMPLES_SERVERS / "prosody.cfg.lua"

    @property
    def console_log(self):
        return self.dir / "log" / "console.log"

    def template_values(self):
        return {
            "RUN_DIR": self.dir / "run",
            "DATA_DIR": self.dir / "data",
            "CERT_DIR": self.dir / "certs",
            "LOG_DIR": self.dir / "log",
            "C2S_REQUIRE_ENCRYPTION": "false",
            "ALLOW_UNENCRYPTED_PLAIN_AUTH": "true",
            "C2S_STANZA_SIZE_LIMIT": self.c2s_stanza_size_limit,
        }

    def template_sections(self):
        return {"privilege": self.privileged, "no-offline": not self.offline}

    def grant_presence(self, text):
        """"roster" comes with roster "get", without which Prosody does not grant it."""
        old = 'presence = "managed_entity" }'
        assert old in text, "privileged_entities line changed in the template"
        extra = 'roster = "get"; ' if self.presence == "roster" else ""
        return text.replace(old, f'{extra}presence = "{self.presence}" }}')

    def configure(self):
        for sub in ("data", "log", "run", "certs"):
            (self.dir / sub).mkdir(exist_ok=True)
        chown_tree(self.dir, self.user)
        for name, password in self.users.items():
            # prosodyctl drops privileges to the prosody user by itself.
            run(["prosodyctl", "--config", self.config_path, "register", name,
                 self.domain, password], env=self.environment(), timeout=60)

    def environment(self):
        return user_env(self.user, self.dir)

    def command(self):
        argv = as_user(self.user, ["prosody", "--config", str(self.config_path), "-F"])
        return argv, self.environment()

    def log_files(self):
        return [self.console_log, self.dir / "log" / "prosody.log"]
