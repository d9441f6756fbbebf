"""A terminal program driven as a person would: started in a detached tmux
session of its own, fed keystrokes with `send-keys`, read with
`capture-pane`. Each wait is for text to appear on the screen (or in the
scrollback), never for a fixed time."""

import shlex
import shutil
import subprocess
import time
import uuid

SOCKET = "satchel-tests"


class TmuxProgram:
    def __init__(self, argv, env=None, width=220, height=50):
        self.session = f"satchel-{uuid.uuid4().hex[:8]}"
        # curses believes COLUMNS and LINES over the terminal, and the tmux
        # server passes on those of whoever started it: none for the program.
        settings = " ".join(_quote(f"{k}={v}") for k, v in (env or {}).items())
        command = f"env -u COLUMNS -u LINES {settings} " + " ".join(_quote(a) for a in argv)
        tmux("new-session", "-d", "-s", self.session, "-x", str(width), "-y", str(height),
             command)
        tmux("set-option", "-t", self.session, "history-limit", "10000")

    @staticmethod
    def installed():
        return shutil.which("tmux") is not None

    def type(self, text, enter=True):
        """Types `text` (literally), then Enter."""
        tmux("send-keys", "-t", self.session, "-l", text)
        if enter:
            tmux("send-keys", "-t", self.session, "Enter")

    def screen(self):
        """What the terminal shows, with its scrollback, lines joined where they wrapped."""
        return tmux("capture-pane", "-p", "-J", "-S", "-5000", "-t", self.session).stdout

    def wait_for(self, text, timeout=30, ending=None):
        """Waits until `text` is on the screen (the window shown, with its
        scrollback), on a line that ends with `ending` if given; returns the
        screen. Callers wait for text that is new, such as a file name of
        their own. Raises AssertionError with the screen on timeout."""
        def shown(screen):
            return any(text in line and (ending is None or line.rstrip().endswith(ending))
                       for line in screen.splitlines())

        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if shown(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not shown within {timeout} s; the screen:\n"
                                     + "\n".join(l.rstrip() for l in screen.splitlines()
                                                 if l.strip()))
            time.sleep(0.2)

    def close(self):
        tmux("kill-session", "-t", self.session, check=False)


def tmux(*args, check=True):
    """A tmux command on the tests' own server (socket `satchel-tests`), apart
    from any tmux a person runs on the machine."""
    return subprocess.run(["tmux", "-L", SOCKET, *args], check=check, capture_output=True,
                          text=True, timeout=10)


def _quote(arg):
    return shlex.quote(str(arg))
