"""What a pytest session of the integration tests shares, for conftest.py and
for test modules that set up servers of their own (test_relay.py):

- SERVER_KINDS: which XMPP servers run, from env SATCHEL_TEST_SERVERS
  (default "prosody,ejabberd");
- SatchelManager: at most one Satchel per server, reused by consecutive tests
  that want the same config;
- report_logs_of(): the Satchels whose log tails go into a failed test's report."""

import os

import pytest

from .client import wait_component
from .satchel import Satchel

SERVER_KINDS = [k.strip() for k in
                os.environ.get("SATCHEL_TEST_SERVERS", "prosody,ejabberd").split(",") if k.strip()]

_REPORTED_SATCHELS = pytest.StashKey()


def report_logs_of(item, *satchels):
    """Attach the logs of `satchels` to the report of test `item` (a pytest node)
    should it fail."""
    item.stash[_REPORTED_SATCHELS] = list(satchels)


def reported_satchels(item):
    """The Satchels report_logs_of() named for `item`, or []."""
    return item.stash.get(_REPORTED_SATCHELS, [])


class SatchelManager:
    """At most one Satchel per server (they all share the component JID);
    reused while the requested config is the same."""

    def __init__(self, server):
        self.server = server
        self.current = None
        self.current_overrides = None
        self.all = []

    def get(self, overrides=None, fresh=False):
        """A running Satchel with `overrides`: the current one, or (when the config
        differs, it has exited, or `fresh`) a new one with an empty store."""
        overrides = overrides or {}
        if (self.current is not None and not fresh and self.current_overrides == overrides
                and self.current.running()):
            return self.current
        self.stop_current()
        s = Satchel(self.server, overrides)
        self.all.append(s)
        self.current, self.current_overrides = s, overrides
        s.start()
        wait_component(self.server, satchel=s)
        return s

    def invalidate(self):
        """Make the next get() start a new process (after a test that disturbed it)."""
        self.stop_current()

    def stop_current(self):
        if self.current is not None:
            self.current.stop()
            self.current = None
            self.current_overrides = None

    def cleanup(self):
        """Stops every Satchel; removes their directories unless SATCHEL_KEEP_TMP is set."""
        self.stop_current()
        keep = os.environ.get("SATCHEL_KEEP_TMP")
        for s in self.all:
            if keep:
                s.stop()
            else:
                s.cleanup()
