"""A real 3-node Garage cluster (the `garage` binary, built by `.ci/run` with
`cargo install garage`) on loopback: three processes, each with its own
ports and directories, replication factor 3, one bucket and one key made
with Garage's own CLI. Satchel talks to node 1's S3 API; nodes 2 and 3 can
be stopped to take replicas away. Read back with boto3 (s3bucket)."""

import os
import re
import secrets
import shutil
import subprocess

from .s3bucket import BUCKET, S3Bucket
from .service import Service
from .util import free_port, make_tempdir, wait_until

REGION = "garage"


class GarageNode(Service):
    name = "garage"
    tempdir_prefix = "satchel-garage-"
    start_timeout = 60.0

    def __init__(self, workdir, index, rpc_secret):
        super().__init__(workdir)
        self.index = index
        self.rpc_port, self.s3_port, self.admin_port = free_port(), free_port(), free_port()
        self.config = self.dir / "garage.toml"
        self.console_log = self.dir / "garage.log"
        self.data = self.dir / "data"
        self.rpc_secret = rpc_secret

    def prepare(self):
        self.config.write_text(
            f'metadata_dir = "{self.dir / "meta"}"\n'
            f'data_dir = "{self.data}"\n'
            'db_engine = "lmdb"\n'
            "replication_factor = 3\n"
            f'rpc_bind_addr = "127.0.0.1:{self.rpc_port}"\n'
            f'rpc_public_addr = "127.0.0.1:{self.rpc_port}"\n'
            f'rpc_secret = "{self.rpc_secret}"\n'
            "[s3_api]\n"
            f's3_region = "{REGION}"\n'
            f'api_bind_addr = "127.0.0.1:{self.s3_port}"\n'
            "[admin]\n"
            f'api_bind_addr = "127.0.0.1:{self.admin_port}"\n')

    def command(self):
        return ["garage", "-c", str(self.config), "server"], dict(os.environ, RUST_LOG="garage=warn")

    def ready_ports(self):
        return [self.rpc_port, self.s3_port]

    def cli(self, *args):
        """Garage's CLI against this node; its output."""
        run = subprocess.run(["garage", "-c", str(self.config), *args],
                             capture_output=True, text=True, timeout=60)
        if run.returncode != 0:
            raise RuntimeError(f"garage {' '.join(args)}: {run.stderr.strip()}")
        return run.stdout

    def node_id(self):
        return self.cli("node", "id", "-q").strip()


class GarageCluster(S3Bucket):
    """Three nodes, one zone each, every object on all three."""

    def __init__(self):
        self.dir = make_tempdir("satchel-garage-")
        secret = secrets.token_hex(32)
        self.nodes = [GarageNode(self.dir / f"node{i}", i, secret) for i in (1, 2, 3)]
        for node in self.nodes:
            node.dir.mkdir(parents=True, exist_ok=True)
        self.endpoint = f"http://127.0.0.1:{self.nodes[0].s3_port}"
        self.region = REGION

    @staticmethod
    def installed():
        return shutil.which("garage") is not None

    @property
    def data_dirs(self):
        return [node.data for node in self.nodes]

    def start(self):
        for node in self.nodes:
            node.start()
        first = self.nodes[0]
        self.connect_nodes()
        for zone, node in enumerate(self.nodes, 1):
            first.cli("layout", "assign", "-z", f"dc{zone}", "-c", "1G", node.node_id()[:16])
        first.cli("layout", "apply", "--version", "1")
        first.cli("bucket", "create", BUCKET)
        made = first.cli("key", "create", "satchel-test")
        self.access_key = re.search(r"Key ID:\s*(\S+)", made).group(1)
        self.secret_key = re.search(r"Secret key:\s*(\S+)", made).group(1)
        first.cli("bucket", "allow", "--read", "--write", "--owner", BUCKET,
                  "--key", "satchel-test")
        wait_until(self.answers, timeout=60, interval=0.2, what="Garage's bucket")
        return self

    def start_again(self):
        """After `stop`: every node back, and the bucket serving."""
        for node in self.nodes:
            node.start()
        self.connect_nodes()
        wait_until(self.answers, timeout=60, interval=0.2, what="Garage's bucket")

    @property
    def spare_nodes(self):
        """The nodes a test may stop while node 1 keeps serving S3."""
        return self.nodes[1:]

    def restart_nodes(self, nodes):
        """`nodes` (stopped) back in the cluster."""
        for node in nodes:
            node.start()
        self.connect_nodes()

    def connect_nodes(self):
        """Node 1 dials the others: nodes that all restarted do not find each
        other again by themselves (no bootstrap_peers in their configs)."""
        for node in self.nodes[1:]:
            self.nodes[0].cli("node", "connect", node.node_id())

    def stop(self):
        for node in self.nodes:
            node.stop()

    def cleanup(self):
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self, lines=None):
        return "\n".join(node.logs(lines) for node in self.nodes)
