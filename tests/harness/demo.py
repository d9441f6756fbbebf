"""What the demos in examples/ share: their step headings and how they end."""


def step(msg):
    print(f"==> {msg}", flush=True)


def finish(server, satchel, keep, users, download):
    """Stops Satchel and the server, or with `keep` says how to use and stop them.

    `download` is a shell command that fetches the demo's file again."""
    if keep:
        step("--keep: leaving them running")
        print(f"    download again:  {download}")
        for user in users:
            print(f"    log in as {user}@{server.domain} / {server.users[user]} "
                  f"at 127.0.0.1:{server.c2s_port} (plaintext)")
        print("    stop them with:")
        print(f"      kill -- -{satchel.process.pid}   # Satchel")
        print(f"      kill -- -{server.process.pid}   # {server.kind}")
        print(f"      rm -rf {satchel.dir} {server.dir}")
        return
    step(f"stopping Satchel and {server.kind}")
    if satchel is not None:
        satchel.cleanup()
    server.cleanup()
    print("    stopped; temporary directories removed")
