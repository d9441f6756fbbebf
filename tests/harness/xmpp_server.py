"""An XMPP server for the tests, whichever kind: the options both kinds take,
their ports, and their config rendered from the example config operators copy
(examples/servers/), so that the example cannot rot.

What differs between Prosody and ejabberd (the template's placeholders and
optional blocks, how XEP-0356 presence is granted, how the process is
launched and accounts are made) is in harness/prosody.py and harness/ejabberd.py."""

from . import C2S_STANZA_SIZE_LIMIT, COMPONENT_JID, DOMAIN, USERS
from .service import Service
from .util import chown_tree, free_port, render_template, variant_name


class XmppServer(Service):
    """A server of kind `kind`, running as the system user `user`, configured from
    `template` (written to a file of the same name in its directory). A subclass
    provides template_values() and template_sections() for its template, and
    grant_presence() for a `presence` permission other than the template's
    "managed_entity"."""

    kind = None
    user = None
    template = None

    def __init__(self, secret="satchel-test-secret", users=None, workdir=None,
                 privileged=False, offline=True, presence="managed_entity",
                 c2s_stanza_size_limit=C2S_STANZA_SIZE_LIMIT, config_hook=None, tls=None):
        """privileged: load the server's mod_privilege and grant the component
        XEP-0356 message ("outgoing") and presence permission (`presence`:
        "managed_entity", or "roster").
        offline: keep offline storage (mod_offline); False runs without it.
        config_hook: a function (config_text, server) -> config_text applied to
        the rendered config before it is written (examples/bench/ adds the
        server's own upload module this way); None writes the example as it is.
        tls: a harness.pki.ServerPki whose localhost certificate the server
        offers with STARTTLS on c2s (not required); None: plain c2s only."""
        super().__init__(workdir)
        self.domain = DOMAIN
        self.component_jid = COMPONENT_JID
        self.secret = secret
        self.users = dict(USERS if users is None else users)
        self.privileged = privileged
        self.offline = offline
        self.presence = presence
        self.c2s_stanza_size_limit = c2s_stanza_size_limit
        self.config_hook = config_hook
        self.tls = tls
        self.c2s_port = free_port()
        self.component_port = free_port()
        self.config_path = self.dir / self.template.name
        self._configured = False

    @property
    def name(self):
        return self.kind

    @property
    def tempdir_prefix(self):
        return f"satchel-{self.kind}-"

    # -- what each kind provides -----------------------------------------------------------
    def template_values(self):
        """Values for the placeholders only this kind's template has."""
        raise NotImplementedError

    def template_sections(self):
        """Which optional blocks of the template to keep."""
        raise NotImplementedError

    def grant_presence(self, text):
        """The rendered config with `self.presence` granted instead of managed_entity."""
        raise NotImplementedError

    def configure(self):
        """Writes what the first start needs besides the config file."""

    # -- shared ----------------------------------------------------------------------------
    def prepare(self):
        if self._configured:
            return
        self.write_config()
        self.configure()
        self.install_certificate()
        chown_tree(self.dir, self.user)
        self._configured = True

    def install_certificate(self):
        """Copies the localhost certificate where both kinds look for it: Prosody
        in its certificates directory by host name, ejabberd in the one file
        `certfiles` names."""
        if self.tls is None:
            return
        certs = self.dir / "certs"
        certs.mkdir(exist_ok=True)
        for source, name in ((self.tls.cert, "localhost.crt"), (self.tls.key, "localhost.key"),
                             (self.tls.bundle, "localhost.pem")):
            target = certs / name
            target.write_bytes(source.read_bytes())
            target.chmod(0o600)

    def write_config(self):
        text = render_template(self.template, {
            "DOMAIN": self.domain,
            "C2S_PORT": self.c2s_port,
            "COMPONENT_PORT": self.component_port,
            "COMPONENT_JID": self.component_jid,
            "COMPONENT_SECRET": self.secret,
            **self.template_values(),
        }, sections=self.template_sections())
        if self.privileged and self.presence != "managed_entity":
            text = self.grant_presence(text)
        if self.config_hook is not None:
            text = self.config_hook(text, self)
        self.config_path.write_text(text)

    def ready_ports(self):
        return [self.c2s_port, self.component_port]

    @property
    def variant(self):
        return variant_name(self.privileged, self.offline)

    def __repr__(self):
        return (f"<{type(self).__name__} {self.variant} c2s=127.0.0.1:{self.c2s_port} "
                f"component=127.0.0.1:{self.component_port} dir={self.dir}>")
