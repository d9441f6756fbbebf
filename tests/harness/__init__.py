"""Test harness for Satchel: real XMPP servers (Prosody, ejabberd), the Satchel
binary and a slixmpp client, all on loopback addresses, in temporary directories.

Used by tests/conftest.py and by examples/demo_client.py.
"""

from .util import REPO_ROOT, free_port, wait_port  # noqa: F401

DOMAIN = "localhost"
COMPONENT_JID = "upload.localhost"
USERS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}
# Largest stanza a test client may send (both servers default to 256 KiB): big
# enough for a relay request naming 10 000 recipients.
C2S_STANZA_SIZE_LIMIT = 1024 * 1024


def make_server(kind, privileged=False, offline=True, **kwargs):
    """Create (not start) an XMPP server of the given kind: 'prosody' or 'ejabberd'.

    privileged=True loads the server's mod_privilege and grants the component
    XEP-0356 message (outgoing) and presence (managed_entity; presence="roster"
    for the other kind) permission; offline=False runs it without offline
    storage (mod_offline). Both come from the optional blocks of the example
    configs in examples/servers/. Other keyword arguments go to the server
    class (e.g. users=..., config_hook=... to edit the rendered config, which
    examples/bench/ uses to add the servers' own upload modules)."""
    kwargs.update(privileged=privileged, offline=offline)
    if kind == "prosody":
        from .prosody import ProsodyServer
        return ProsodyServer(**kwargs)
    if kind == "ejabberd":
        from .ejabberd import EjabberdServer
        return EjabberdServer(**kwargs)
    raise ValueError(f"unknown server kind {kind!r}")
