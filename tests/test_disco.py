"""Service discovery (XEP-0030/0128), ping (XEP-0199) and unknown IQs."""

import pytest

from harness import COMPONENT_JID
from harness.client import NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_UPLOAD, XmppError

NS_PURPOSE = "urn:xmpp:http:upload:purpose:0"
FEATURES = {
    NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING,
    NS_UPLOAD, f"{NS_PURPOSE}#message", f"{NS_PURPOSE}#ephemeral", f"{NS_PURPOSE}#permanent",
    "http://jabber.org/protocol/address",   # the relay (XEP-0033)
    "http://jabber.org/protocol/commands",  # commands for users and admins (XEP-0050)
}


def assert_is_the_service(info):
    """One identity, a file store (XEP-0363 §2), and the service's features."""
    assert [(cat, typ) for cat, typ, _name in info.identities] == [("store", "file")], \
        info.identities
    assert info.features == FEATURES


def test_disco_info_identity_and_feature(satchel, alice):
    assert_is_the_service(alice.disco_info(COMPONENT_JID))


def test_disco_info_max_file_size(satchel, alice):
    info = alice.disco_info(COMPONENT_JID)
    # One XEP-0128 form, as XEP-0363 §2 shows it.
    assert info.forms == [{"FORM_TYPE": [NS_UPLOAD],
                           "max-file-size": [str(satchel.max_file_size)]}], info.forms


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
    """An IQ whose one child Satchel does not know: service-unavailable (RFC 6120
    §8.4). (IQs with no child or two are test_xmpp_abuse.py's.)"""
    with pytest.raises(XmppError) as e:
        alice.iq("<frobnicate xmlns='urn:example:satchel:unknown'/>", to=COMPONENT_JID, type_=type_)
    assert (e.value.type, e.value.condition) == ("cancel", "service-unavailable"), str(e.value)


def test_still_answers_after_unknown_iqs(satchel, alice):
    for _ in range(3):
        with pytest.raises(XmppError) as e:
            alice.iq("<frobnicate xmlns='urn:example:satchel:unknown'/>", to=COMPONENT_JID)
        assert e.value.condition == "service-unavailable", str(e.value)
    assert alice.ping(COMPONENT_JID)


def test_disco_info_to_a_user_of_the_component_is_answered_by_the_service(satchel, alice):
    """Satchel has no users: an IQ to someone@ its domain is answered by the
    service itself, from its own JID, with the service's disco#info."""
    resp = alice.iq_raw(f"<query xmlns='{NS_DISCO_INFO}'/>", to=f"nobody@{COMPONENT_JID}")
    assert resp.get("type") == "result", resp
    assert resp.get("from") == COMPONENT_JID
    assert_is_the_service(alice.disco_info(f"nobody@{COMPONENT_JID}"))
    assert alice.ping(COMPONENT_JID)


def test_disco_nodes_are_item_not_found(satchel, alice):
    for ns in (NS_DISCO_INFO, NS_DISCO_ITEMS):
        resp = alice.iq_raw(f"<query xmlns='{ns}' node='some-node'/>")
        assert resp.get("type") == "error"
        error = XmppError(resp)
        assert (error.type, error.condition) == ("cancel", "item-not-found"), str(error)
