"""Two Satchel instances of one cluster (`a` and `b`): one PostgreSQL
database, one S3 bucket, one master key, one XMPP server. Used by
tests/test_cluster.py and examples/cluster/demo.py."""

from .client import wait_component
from .satchel import Satchel, wait_for_log

MIB = 1024 * 1024


class Cluster:
    """Instances `a` and `b`: one database, one bucket, one master key."""

    def __init__(self, server, postgres, bucket, limits=None, lease_secs=10):
        self.server = server
        self.instances = {}
        shared_key = None
        for name in ("a", "b"):
            config = {**bucket.satchel_config(), **postgres.satchel_config(name, lease_secs)}
            config["limits"] = {"max_file_size": 64 * MIB, **(limits or {})}
            satchel = Satchel(server, config)
            if shared_key is None:
                shared_key = satchel.key_file
            satchel.config["storage"]["key_file"] = str(shared_key)
            self.instances[name] = satchel

    def start(self):
        # `a` first: it creates the master key `b` then shares, and leads.
        self.a.start()
        wait_component(self.server, satchel=self.a)
        self.b.start()
        wait_for_log(self.b, "does not lead the cluster")
        return self

    @property
    def a(self):
        return self.instances["a"]

    @property
    def b(self):
        return self.instances["b"]

    def leader(self):
        for satchel in self.instances.values():
            if satchel.running() and "now leads the cluster" in last_leadership_line(satchel):
                return satchel
        return None

    def cleanup(self):
        for satchel in self.instances.values():
            satchel.cleanup()


def last_leadership_line(satchel):
    lines = [line for line in satchel.log_path.read_text(errors="replace").splitlines()
             if "leads the cluster" in line]
    return lines[-1] if lines else ""


def through(satchel, url):
    """`url` as served by `satchel`: instances sit behind one load balancer
    in production, each with its own port here."""
    path = url.split("/", 3)[3]
    return f"{satchel.public_url}/{path}"
