"""What every program the tests start has in common: a temporary directory of
its own, loopback ports, a process group whose output goes to a log file, a
start that is over only when the ports accept connections, a stop that waits
until they are closed again, and the tails of its logs for failure reports.

Prosody, ejabberd and Satchel (harness/prosody.py, harness/ejabberd.py,
harness/satchel.py) differ only in how they are configured and launched; the
lifecycle is written once, here."""

import shutil
import signal
from pathlib import Path

from .util import Process, make_tempdir, tail, wait_port, wait_port_closed


class Service:
    """A program under test. A subclass sets `name` (for messages) and
    `console_log` (where the process's output goes), and says how to launch it:

    - prepare(): write what the launch needs (config files, accounts);
    - command() -> (argv, env);
    - ready_ports(): the ports that accept connections once it is up;
    - after_start(): work that needs it running (optional);
    - log_files(): the logs worth showing when something fails.

    `stop_signal` (SIGTERM unless a subclass says otherwise) asks it to stop;
    `stop_timeout` is how long it may take to exit before the whole process
    group is killed; `log_lines` how much of each log logs() shows."""

    name = "service"
    tempdir_prefix = "satchel-service-"
    stop_signal = signal.SIGTERM
    stop_timeout = 10.0
    start_timeout = 30.0
    log_lines = 40

    def __init__(self, workdir=None):
        self.dir = Path(workdir) if workdir else make_tempdir(self.tempdir_prefix)
        self.process = None

    # -- what a subclass provides ------------------------------------------------------
    def prepare(self):
        pass

    def command(self):
        raise NotImplementedError

    def ready_ports(self):
        raise NotImplementedError

    def closed_ports(self):
        """The ports that must be free again once it has stopped."""
        return self.ready_ports()

    def after_start(self):
        pass

    def log_files(self):
        return [self.console_log]

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, timeout=None):
        """Launches it and returns once every ready port accepts connections; on
        failure stops what was started and raises RuntimeError with the log tails."""
        self.prepare()
        argv, env = self.command()
        self.process = Process(argv, self.console_log, env=env, cwd=self.dir,
                               name=self.name).start()
        try:
            for port in self.ready_ports():
                wait_port(port, timeout=timeout or self.start_timeout, proc=self.process,
                          what=self.name)
            self.after_start()
        except Exception as e:
            self.stop()
            raise RuntimeError(f"{self.name} failed to start: {e}\n{self.logs()}") from e
        return self

    def stop(self):
        """`stop_signal` to the process group (SIGKILL after `stop_timeout`),
        then waits until its ports are closed."""
        if self.process is not None:
            self.process.stop(timeout=self.stop_timeout, sig=self.stop_signal)
            self.process = None
        for port in self.closed_ports():
            wait_port_closed(port, timeout=5)

    def kill(self):
        """SIGKILL, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process = None

    def restart(self, timeout=None):
        self.stop()
        return self.start(timeout=timeout)

    def running(self):
        return self.process is not None and self.process.running()

    def cleanup(self):
        """Stops it and removes its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self, lines=None):
        """The last `lines` (default `log_lines`) lines of each of its logs."""
        return "\n".join(tail(path, lines or self.log_lines) for path in self.log_files())
