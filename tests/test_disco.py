"""Service discovery (XEP-0030/0128), ping (XEP-0199) and unknown IQs."""

import pytest

from harness import COMPONENT_JID
from harness.client import NS_UPLOAD, XmppError

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"


def test_disco_info_identity_and_feature(satchel, alice):
    info = alice.disco_info(COMPONENT_JID)
    assert any(cat == "store" and typ == "file" for cat, typ, _ in info.identities), info.identities
    assert NS_UPLOAD in info.features
    assert NS_DISCO_INFO in info.features


def test_disco_info_max_file_size(satchel, alice):
    info = alice.disco_info(COMPONENT_JID)
    form = info.form(NS_UPLOAD)
    assert form is not None, f"no XEP-0128 form with FORM_TYPE {NS_UPLOAD}: {info.forms}"
    assert form.get("max-file-size") == [str(satchel.max_file_size)]


def test_disco_items_empty(satchel, alice):
    assert alice.disco_items(COMPONENT_JID) == []


def test_server_lists_the_component(satchel, alice, server):
    """The example server configs make the upload service discoverable from the domain."""
    items = alice.disco_items(server.domain)
    assert COMPONENT_JID in [jid for jid, _node, _name in items]


def test_ping(satchel, alice):
    assert alice.ping(COMPONENT_JID) is True


@pytest.mark.parametrize("type_", ["get", "set"])
def test_unknown_iq_is_refused(satchel, alice, type_):
    # One child: Prosody drops IQs with zero or two children before they reach a component.
    with pytest.raises(XmppError) as e:
        alice.iq("<frobnicate xmlns='urn:example:satchel:unknown'/>", to=COMPONENT_JID, type_=type_)
    assert e.value.condition in ("service-unavailable", "feature-not-implemented"), str(e.value)
    assert e.value.type == "cancel"


def test_still_answers_after_unknown_iqs(satchel, alice):
    for _ in range(3):
        with pytest.raises(XmppError):
            alice.iq("<frobnicate xmlns='urn:example:satchel:unknown'/>", to=COMPONENT_JID)
    assert alice.ping(COMPONENT_JID)


def test_disco_info_to_a_node_or_user_of_the_component(satchel, alice):
    """A disco#info to some resource-less user at the component is not the service itself:
    it must not crash Satchel (any answer or error is fine, as long as one comes)."""
    resp = alice.iq_raw(f"<query xmlns='{NS_DISCO_INFO}'/>", to=f"nobody@{COMPONENT_JID}")
    assert resp.get("type") in ("result", "error")
    assert alice.ping(COMPONENT_JID)


def test_disco_nodes_are_item_not_found(satchel, alice):
    for ns in (NS_DISCO_INFO, "http://jabber.org/protocol/disco#items"):
        resp = alice.iq_raw(f"<query xmlns='{ns}' node='some-node'/>")
        assert resp.get("type") == "error"
        assert resp.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None
