"""SIGHUP rereads the configuration file (`systemctl reload satchel`).

What an operator relies on: a lowered `limits.max_file_size` (a key `satchel
--help` marks ~) applies to the next slot request, on the same process, with a
log line naming the key and both values; a changed key that needs a restart
(here `http.public_url` and `component.secret`) is refused with a log line
naming it, and the running value stays; a file that no longer reads or checks
changes nothing. An admin added to `[admin] jids` gets the admin commands at
once.

Each test rewrites the config file of a Satchel of its own and leaves it
changed, so the next test gets a new one (`satchel_manager.invalidate()`).
"""

import os
import re
import signal

import pytest
import requests

from harness import COMPONENT_JID
from harness.client import NS_UPLOAD, XmppError
from harness.satchel import log_size, to_toml, wait_for_log
from test_commands import ADMIN_NODES, USER_NODES, listed_nodes

TIMEOUT = 15
FIRST_MAX = 10_000
LOWER_MAX = 4_000


@pytest.fixture
def reloadable(satchel, satchel_manager):
    yield satchel
    satchel_manager.invalidate()


def reload_with(satchel, text):
    """Writes `text` as Satchel's config file, sends SIGHUP and returns where
    the log stood before it (a `since` for wait_for_log)."""
    since = log_size(satchel)
    satchel.config_path.write_text(text)
    os.kill(satchel.process.pid, signal.SIGHUP)
    return since


def refused_as_too_large(client, size):
    with pytest.raises(XmppError) as refused:
        client.request_slot("big.bin", size, "application/octet-stream")
    assert refused.value.condition == "not-acceptable", str(refused.value)
    return refused.value.find(
        f"{{{NS_UPLOAD}}}file-too-large/{{{NS_UPLOAD}}}max-file-size").text.strip()


def advertised_max(client):
    form = client.disco_info(COMPONENT_JID).form(NS_UPLOAD)
    return form["max-file-size"]


@pytest.mark.satchel_config(limits={"max_file_size": FIRST_MAX}, fresh=True)
def test_a_lower_max_file_size_applies_to_the_next_slot_request(reloadable, alice):
    satchel = reloadable
    assert alice.request_slot("before.bin", FIRST_MAX, "application/octet-stream")

    satchel.config["limits"]["max_file_size"] = LOWER_MAX
    since = reload_with(satchel, to_toml(satchel.config))
    wait_for_log(satchel, rf'setting reloaded key="?limits\.max_file_size"? '
                          rf"old={FIRST_MAX} new={LOWER_MAX}", since)
    # Its derived quotas follow it, logged as well.
    wait_for_log(satchel, rf'setting reloaded key="?limits\.daily_upload_bytes"? '
                          rf"old={10 * FIRST_MAX} new={10 * LOWER_MAX}", since)
    wait_for_log(satchel, r"configuration reloaded changed=3 refused=0", since)
    assert satchel.running()

    # Over the new limit: refused, naming it; under it: granted, and the upload works.
    assert refused_as_too_large(alice, LOWER_MAX + 1) == str(LOWER_MAX)
    slot = alice.request_slot("after.bin", LOWER_MAX, "application/octet-stream")
    data = os.urandom(LOWER_MAX)
    put = requests.put(slot.put_url, data=data, timeout=TIMEOUT,
                       headers=dict(slot.put_headers,
                                    **{"Content-Type": "application/octet-stream"}))
    assert put.status_code == 201, (put.status_code, put.text)
    assert requests.get(slot.get_url, timeout=TIMEOUT).content == data
    assert advertised_max(alice) == [str(LOWER_MAX)]


@pytest.mark.satchel_config(limits={"max_file_size": FIRST_MAX}, fresh=True)
def test_a_change_that_needs_a_restart_is_refused_and_the_rest_applies(reloadable, alice):
    satchel = reloadable
    running_url = satchel.config["http"]["public_url"]
    changed = dict(satchel.config,
                   http=dict(satchel.config["http"], public_url="https://elsewhere.example"),
                   component=dict(satchel.config["component"], secret="another secret"),
                   limits=dict(satchel.config["limits"], max_file_size=LOWER_MAX))
    since = reload_with(satchel, to_toml(changed))
    match, _ = wait_for_log(
        satchel, r'setting not reloaded.*key="?http\.public_url"?.*', since)
    line = match.group(0)
    assert f'running="{running_url}" file="https://elsewhere.example"' in line, line
    match, _ = wait_for_log(
        satchel, r'setting not reloaded.*key="?component\.secret"?.*', since)
    assert match.group(0).endswith("running=<hidden> file=<hidden>"), match.group(0)
    wait_for_log(satchel, r"configuration reloaded changed=3 refused=2", since)

    # The URLs handed out still use the running public_url; the new limit applies.
    slot = alice.request_slot("kept.bin", LOWER_MAX, "application/octet-stream")
    assert slot.put_url.startswith(running_url + "/"), slot.put_url
    assert refused_as_too_large(alice, LOWER_MAX + 1) == str(LOWER_MAX)
    # The link stayed up on the running secret.
    assert alice.request_slot("again.bin", 1, "application/octet-stream")


@pytest.mark.parametrize("broken", [
    "[limits\nmax_file_size = 1\n",              # not TOML
    "max_file_size = 0",                         # a value that does not check
    "[limits]\nmax_fiel_size = 1\n",             # an unknown key
    "\xff\xfe garbage",                          # not UTF-8 (written as latin-1)
], ids=["not-toml", "zero-limit", "unknown-key", "not-utf8"])
@pytest.mark.satchel_config(limits={"max_file_size": FIRST_MAX}, fresh=True)
def test_a_broken_file_keeps_every_setting(reloadable, alice, broken):
    satchel = reloadable
    if broken == "max_file_size = 0":
        lowered = dict(satchel.config, limits=dict(satchel.config["limits"], max_file_size=0))
        text = to_toml(lowered)
    else:
        text = broken
    since = log_size(satchel)
    satchel.config_path.write_bytes(text.encode("latin-1"))
    os.kill(satchel.process.pid, signal.SIGHUP)
    match, _ = wait_for_log(
        satchel, r"configuration not reloaded: every setting stays as it was.*", since)
    assert re.search(r"satchel\.toml|limits\.max_f", match.group(0)), match.group(0)
    assert satchel.running()
    assert alice.request_slot("still.bin", FIRST_MAX, "application/octet-stream")
    assert refused_as_too_large(alice, FIRST_MAX + 1) == str(FIRST_MAX)
    assert advertised_max(alice) == [str(FIRST_MAX)]


@pytest.mark.satchel_config(fresh=True)
def test_an_admin_added_by_a_reload_gets_the_admin_commands(reloadable, connect):
    satchel = reloadable
    carol = connect("carol")
    assert listed_nodes(carol) == USER_NODES

    satchel.config["admin"] = {"jids": ["carol@localhost"]}
    since = reload_with(satchel, to_toml(satchel.config))
    wait_for_log(satchel, r'setting reloaded key="?admin\.jids"?', since)
    assert listed_nodes(carol) == USER_NODES | ADMIN_NODES
