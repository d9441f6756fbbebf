"""SIGKILL at random moments, twenty times in a row, with uploads and relays in
flight: every upload answered 201 is intact, no partial file is ever served,
every relay answered with a receipt reaches its recipient, and the data of
abandoned uploads is reclaimed."""

import hashlib
import os
import random
import threading
import time

import pytest
import requests

from harness.client import wait_component
from harness.relay import is_answer_to, is_relay_of, send_relay
from harness.util import wait_until

ROUNDS = 20
TIMEOUT = 15
BOB = "bob@localhost"


def put(slot, data, results):
    try:
        r = requests.put(slot.put_url, data=data, timeout=TIMEOUT,
                         headers={"Content-Type": "application/octet-stream"})
        results[slot.get_url] = r.status_code
    except requests.RequestException:
        results[slot.get_url] = None


@pytest.mark.satchel_config(
    relay={"relays_per_minute": 100000},
    limits={"slot_requests_per_minute": 100000},
    retention={"abandoned_upload_secs": 1, "gc_interval_secs": 1},
    fresh=True)
def test_sigkill_loses_nothing_that_was_acknowledged(satchel, satchel_manager, server, connect):
    rng = random.Random(20261125)
    alice = connect("alice")
    stored = {}                 # get_url -> bytes of every upload answered 201
    unanswered = {}             # get_url -> bytes of uploads cut by a kill
    relays = {}                 # request id -> url, for relays of stored files
    try:
        for round_ in range(ROUNDS):
            uploads = []
            for i in range(4):
                data = os.urandom(rng.choice([1_000, 70_000, 300_000, 1_500_000]))
                uploads.append((alice.request_slot(f"r{round_}-{i}.bin", len(data)), data))
            results = {}
            threads = [threading.Thread(target=put, args=(slot, data, results))
                       for slot, data in uploads]
            for t in threads:
                t.start()
            # Relays of files stored in earlier rounds, sent while uploads run.
            for url in rng.sample(sorted(stored), min(2, len(stored))):
                relays[send_relay(alice, [BOB], url)] = url
            # Not a wait: the kill lands at a random moment of the uploads and relays.
            time.sleep(rng.uniform(0.0, 0.4))
            satchel.kill()
            for t in threads:
                t.join()
            for slot, data in uploads:
                (stored if results.get(slot.get_url) == 201 else unanswered)[slot.get_url] = data
            satchel.start()
            wait_component(server, satchel=satchel)

            for url, data in stored.items():
                r = requests.get(url, timeout=TIMEOUT)
                assert r.status_code == 200, f"round {round_}: an upload answered 201 is gone"
                assert hashlib.sha256(r.content).digest() == hashlib.sha256(data).digest()
            for url, data in unanswered.items():
                r = requests.get(url, timeout=TIMEOUT)
                # Committed just before the kill (201 lost on the way) or not at all.
                assert r.status_code == 404 or r.content == data, f"round {round_}: partial file"

        assert len(stored) >= ROUNDS, f"too few uploads completed to prove anything: {len(stored)}"
        receipted = [rid for rid in relays if alice.messages_matching(is_answer_to(rid))]
        assert receipted, "no relay was acknowledged"
        bob = connect("bob")
        for rid in receipted:
            bob.wait_for_message(is_relay_of(relays[rid]), timeout=60)

        # Abandoned uploads leave no data once the collector has run.
        def part_files():
            return list((satchel.store_path / "content").rglob("*.part"))

        wait_until(lambda: not part_files(), 10,
                   lambda: f"abandoned upload data left: {part_files()}", interval=0.5)
        assert "panicked" not in satchel.logs(5000)
    finally:
        satchel_manager.invalidate()
