-- Benchmark only: added to the global section of examples/servers/prosody.cfg.lua
-- (before its first VirtualHost) by examples/bench/servers.py. Not for operators.

-- Info-level logging only: the test config's debug log writes every stanza
-- and would slow down Prosody (and its slot handling) for every system alike.
log = { info = "{{LOG_DIR}}/prosody.log" }

-- The HTTP server of mod_http_file_share, plain HTTP on loopback only.
http_ports = { {{HTTP_PORT}} }
http_interfaces = { "127.0.0.1" }
https_ports = { }

-- Prosody 0.12 reads a listening port's connections 4 KiB at a time by
-- default (network_default_read_size, core/portmanager.lua), which holds a curl
-- upload to about 3 MiB/s. A larger read size gives Prosody a fair upload
-- figure; it applies to every port (c2s and components too). Change it with
-- python3 examples/bench/run.py --prosody-read-size N.
network_default_read_size = {{READ_SIZE}}
