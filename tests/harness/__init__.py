"""Test harness for Satchel: real XMPP servers (Prosody, ejabberd), the Satchel
binary and a slixmpp client, all on loopback addresses, in temporary directories.

Used by tests/conftest.py and by examples/demo_client.py.
"""

from .util import REPO_ROOT, free_port, wait_port  # noqa: F401

DOMAIN = "localhost"
COMPONENT_JID = "upload.localhost"
USERS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}


def make_server(kind, **kwargs):
    """Create (not start) an XMPP server of the given kind: 'prosody' or 'ejabberd'."""
    if kind == "prosody":
        from .prosody import ProsodyServer
        return ProsodyServer(**kwargs)
    if kind == "ejabberd":
        from .ejabberd import EjabberdServer
        return EjabberdServer(**kwargs)
    raise ValueError(f"unknown server kind {kind!r}")
