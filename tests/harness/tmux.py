"""A terminal program driven as a person would: started in a detached tmux
session of its own, fed keystrokes with `send-keys`, read with
`capture-pane`. Each wait is for text to appear on the screen (or in the
scrollback), never for a fixed time."""

import shutil
import subprocess
import time
import uuid


class TmuxProgram:
    def __init__(self, argv, env=None, width=220, height=50):
        self.session = f"satchel-{uuid.uuid4().hex[:8]}"
        command = " ".join(_quote(a) for a in argv)
        if env:
            command = "env " + " ".join(_quote(f"{k}={v}") for k, v in env.items()) + " " + command
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", str(width),
                        "-y", str(height), command], check=True, timeout=10)
        subprocess.run(["tmux", "set-option", "-t", self.session, "history-limit", "10000"],
                       check=True, timeout=10)

    @staticmethod
    def installed():
        return shutil.which("tmux") is not None

    def type(self, text, enter=True):
        """Types `text` (literally), then Enter."""
        subprocess.run(["tmux", "send-keys", "-t", self.session, "-l", text], check=True,
                       timeout=10)
        if enter:
            subprocess.run(["tmux", "send-keys", "-t", self.session, "Enter"], check=True,
                           timeout=10)

    def screen(self):
        """What the terminal shows, with its scrollback, lines joined where they wrapped."""
        done = subprocess.run(["tmux", "capture-pane", "-p", "-J", "-S", "-5000",
                               "-t", self.session], capture_output=True, text=True, timeout=10)
        return done.stdout

    def wait_for(self, text, timeout=30):
        """Waits until `text` is on the screen (the window shown, with its
        scrollback); returns the screen. Callers wait for text that is new,
        such as a file name of their own. Raises AssertionError with the
        screen on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not shown within {timeout} s; the screen:\n"
                                     + "\n".join(l.rstrip() for l in screen.splitlines()
                                                 if l.strip()))
            time.sleep(0.2)

    def close(self):
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True,
                       timeout=10)


def _quote(arg):
    import shlex
    return shlex.quote(str(arg))
