"""What the demos in examples/ share: their step headings and how they end."""


def step(msg):
    print(f"==> {msg}", flush=True)


def start(server):
    """Starts `server` and Satchel plugged into it, saying where they listen."""
    from . import COMPONENT_JID
    from .client import wait_component
    from .satchel import Satchel

    server.start()
    print(f"    c2s 127.0.0.1:{server.c2s_port}, component port 127.0.0.1:{server.component_port}")
    print(f"    users: {', '.join(f'{u}@{server.domain}' for u in server.users)}")
    step("starting Satchel as the component " + COMPONENT_JID)
    satchel = Satchel(server)
    satchel.start()
    wait_component(server, satchel=satchel)
    print(f"    config {satchel.config_path}")
    print(f"    HTTP   {satchel.public_url}")
    print(f"    log    {satchel.log_path}")
    return satchel


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
