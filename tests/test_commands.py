"""XEP-0050 commands, run with slixmpp's xep_0050 plugin: what users see and
can do with their own files, and what an admin (carol) can do."""

import os
import xml.etree.ElementTree as ET

import pytest
import requests
from slixmpp.exceptions import IqError

from harness import COMPONENT_JID
from harness.client import XmppError, _to_et

NS_COMMANDS = "http://jabber.org/protocol/commands"
NS_DATA = "jabber:x:data"
TIMEOUT = 15
USER_NODES = {"usage", "files", "delete"}
ADMIN_NODES = {"admin/stats", "admin/user", "admin/erase-user", "admin/delete-file",
               "admin/pause", "admin/resume"}
ADMIN = {"admin": {"jids": ["carol@localhost"]}}

pytestmark = pytest.mark.satchel_config(ADMIN)


class Command:
    """One answer to a command: its status, session, fields, table rows, notes."""

    def __init__(self, iq):
        self.xml = iq.find(f"{{{NS_COMMANDS}}}command")
        self.status = self.xml.get("status")
        self.sessionid = self.xml.get("sessionid")
        actions = self.xml.find(f"{{{NS_COMMANDS}}}actions")
        self.actions = set() if actions is None else {a.tag.split("}")[1] for a in actions}
        self.notes = [n.text for n in self.xml.findall(f"{{{NS_COMMANDS}}}note")]
        form = self.xml.find(f"{{{NS_DATA}}}x")
        self.fields, self.rows, self.options = {}, [], {}
        if form is not None:
            for f in form.findall(f"{{{NS_DATA}}}field"):
                self.fields[f.get("var")] = f.findtext(f"{{{NS_DATA}}}value")
                self.options[f.get("var")] = [o.findtext(f"{{{NS_DATA}}}value")
                                              for o in f.findall(f"{{{NS_DATA}}}option")]
            for item in form.findall(f"{{{NS_DATA}}}item"):
                self.rows.append({f.get("var"): f.findtext(f"{{{NS_DATA}}}value")
                                  for f in item.findall(f"{{{NS_DATA}}}field")})


def command(client, node, action="execute", sessionid=None, fields=None):
    """Runs a stage of `node` with slixmpp's xep_0050; a Command, or raises XmppError."""
    x = client.xmpp
    payload = None
    if fields is not None:
        payload = x.plugin["xep_0004"].make_form(ftype="submit")
        for var, value in fields.items():
            payload.add_field(var=var, value=value)

    async def run():
        try:
            iq = await x.plugin["xep_0050"].send_command(COMPONENT_JID, node, action=action,
                                                   payload=payload, sessionid=sessionid,
                                                   timeout=TIMEOUT)
        except IqError as error:
            return _to_et(error.iq.xml)
        return _to_et(iq.xml)

    answer = client._call(run())
    if answer.get("type") == "error":
        raise XmppError(answer)
    return Command(answer)


def listed_nodes(client):
    async def run():
        return _to_et((await client.xmpp.plugin["xep_0050"].get_commands(COMPONENT_JID,
                                                                 timeout=TIMEOUT)).xml)
    query = client._call(run()).find("{http://jabber.org/protocol/disco#items}query")
    return {item.get("node") for item in query}


def upload(client, data, name="file.bin"):
    slot = client.request_slot(name, len(data), "application/octet-stream")
    headers = dict(slot.put_headers, **{"Content-Type": "application/octet-stream"})
    r = requests.put(slot.put_url, data=data, headers=headers, timeout=TIMEOUT)
    assert r.status_code == 201, (r.status_code, r.text)
    return slot.get_url


def test_users_see_the_user_commands_and_admins_also_theirs(satchel, alice, connect):
    assert NS_COMMANDS in alice.disco_info().features
    assert listed_nodes(alice) == USER_NODES
    assert listed_nodes(connect("carol")) == USER_NODES | ADMIN_NODES
    usage = alice.disco_info(node="usage")
    assert [(c, t) for c, t, _ in usage.identities] == [("automation", "command-node")]
    assert NS_COMMANDS in usage.features
    with pytest.raises(XmppError) as hidden:
        alice.disco_info(node="admin/stats")
    assert hidden.value.condition == "item-not-found"


def test_usage_counts_an_upload(satchel, alice):
    before = command(alice, "usage")
    assert before.status == "completed"
    upload(alice, os.urandom(100))
    after = command(alice, "usage")
    assert int(after.fields["stored-files"]) == int(before.fields["stored-files"]) + 1
    assert int(after.fields["stored-bytes"]) == int(before.fields["stored-bytes"]) + 100
    assert int(after.fields["uploaded-today-bytes"]) >= 100
    assert int(after.fields["max-file-size-bytes"]) > 0


@pytest.mark.satchel_config(ADMIN, fresh=True)
def test_files_are_listed_newest_first_fifty_a_page(satchel, bob):
    urls = [upload(bob, b"x", f"f{n}.txt") for n in range(55)]
    first = command(bob, "files")
    assert first.status == "executing" and "next" in first.actions
    assert len(first.rows) == 50
    assert first.rows[0]["size"] == "1" and first.rows[0]["type"] == "application/octet-stream"
    second = command(bob, "files", "next", first.sessionid)
    assert len(second.rows) == 5 and "prev" in second.actions
    back = command(bob, "files", "prev", first.sessionid)
    assert back.rows == first.rows
    rows = first.rows + second.rows
    assert {row["url"] for row in rows} == set(urls)
    # Newest first (upload times are whole seconds: ties in any order).
    stamps = [row["uploaded"] for row in rows]
    assert stamps == sorted(stamps, reverse=True)
    assert all(row["expires"] > row["uploaded"] for row in rows)
    done = command(bob, "files", "complete", first.sessionid)
    assert done.status == "completed"


def test_delete_makes_the_url_404_and_frees_the_quota(satchel, alice):
    url = upload(alice, os.urandom(300), "gone.bin")
    before = command(alice, "usage")
    form = command(alice, "delete")
    assert form.status == "executing"
    deleted = command(alice, "delete", "complete", form.sessionid, {"url": url})
    assert deleted.status == "completed" and "gone.bin" in deleted.notes[0]
    assert requests.get(url, timeout=TIMEOUT).status_code == 404
    after = command(alice, "usage")
    assert int(after.fields["stored-bytes"]) == int(before.fields["stored-bytes"]) - 300


def test_a_user_cannot_delete_anothers_file_or_resume_their_session(satchel, alice, bob):
    url = upload(bob, b"bob's", "bobs.txt")
    upload(alice, b"alice's", "alices.txt")
    form = command(alice, "delete")
    assert form.status == "executing", form.notes
    with pytest.raises(XmppError) as refused:
        command(alice, "delete", "complete", form.sessionid, {"url": url})
    assert refused.value.condition == "item-not-found", str(refused.value)
    with pytest.raises(XmppError) as stolen:
        command(bob, "delete", "complete", form.sessionid, {"url": url})
    assert stolen.value.condition == "bad-request"
    with pytest.raises(XmppError) as malformed:
        command(alice, "delete", "complete", form.sessionid, {"url": "not a url"})
    assert malformed.value.condition == "bad-request" and "'url'" in malformed.value.text
    assert requests.get(url, timeout=TIMEOUT).status_code == 200


def test_non_admins_get_forbidden_and_unknown_nodes_item_not_found(satchel, alice):
    for node in sorted(ADMIN_NODES):
        with pytest.raises(XmppError) as refused:
            command(alice, node)
        assert refused.value.condition == "forbidden", node
    with pytest.raises(XmppError) as unknown:
        command(alice, "no-such-node")
    assert unknown.value.condition == "item-not-found"


def test_an_admin_erases_a_user_after_confirming(satchel, bob, connect):
    carol = connect("carol")
    url = upload(bob, b"leaving", "leaving.txt")
    ask = command(carol, "admin/erase-user")
    confirm = command(carol, "admin/erase-user", "next", ask.sessionid, {"user": "bob@localhost"})
    assert confirm.status == "executing" and "confirm" in confirm.fields
    assert requests.get(url, timeout=TIMEOUT).status_code == 200, "not before confirming"
    done = command(carol, "admin/erase-user", "complete", ask.sessionid, {"confirm": "true"})
    assert done.status == "completed"
    assert requests.get(url, timeout=TIMEOUT).status_code == 404
    usage = command(bob, "usage")
    assert usage.fields["stored-files"] == "0" and usage.fields["stored-bytes"] == "0"


def test_pause_refuses_slots_while_downloads_go_on(satchel, alice, connect):
    carol = connect("carol")
    url = upload(alice, b"still here", "kept.txt")
    try:
        assert command(carol, "admin/pause").status == "completed"
        with pytest.raises(XmppError) as paused:
            alice.request_slot("new.txt", 3, "text/plain")
        assert paused.value.condition == "resource-constraint"
        assert "paused for maintenance" in paused.value.text
        assert requests.get(url, timeout=TIMEOUT).status_code == 200
        stats = command(carol, "admin/stats")
        assert stats.fields["uploads-paused"] == "true"
        assert stats.fields["deliveries-held"] == "0" and stats.fields["relays-pending"] == "0"
        assert int(stats.fields["stored-files"]) >= 1 and int(stats.fields["disk-free-bytes"]) > 0
        assert stats.fields["link"].startswith("up for")
    finally:
        command(carol, "admin/resume")
    upload(alice, b"new", "new.txt")


def test_an_admin_sees_a_users_files_and_deletes_any_by_url(satchel, alice, connect):
    carol = connect("carol")
    url = upload(alice, b"seen by the admin", "seen.txt")
    ask = command(carol, "admin/user")
    shown = command(carol, "admin/user", "next", ask.sessionid, {"user": "alice@localhost"})
    assert url in {row["url"] for row in shown.rows}
    assert int(shown.fields["stored-files"]) >= 1
    form = command(carol, "admin/delete-file")
    done = command(carol, "admin/delete-file", "complete", form.sessionid, {"url": url})
    assert done.status == "completed"
    assert requests.get(url, timeout=TIMEOUT).status_code == 404


def test_hostile_forms_get_bad_request_naming_the_field(satchel, alice, connect):
    upload(alice, b"kept", "kept.txt")
    form = command(alice, "delete")
    with pytest.raises(XmppError) as huge:
        command(alice, "delete", "complete", form.sessionid, {"url": "u" * 5000})
    assert huge.value.condition == "bad-request" and "'url'" in huge.value.text
    carol = connect("carol")
    ask = command(carol, "admin/erase-user")
    with pytest.raises(XmppError) as not_a_user:
        command(carol, "admin/erase-user", "next", ask.sessionid, {"user": "localhost"})
    assert not_a_user.value.condition == "bad-request" and "'user'" in not_a_user.value.text
    command(carol, "admin/erase-user", "cancel", ask.sessionid)
