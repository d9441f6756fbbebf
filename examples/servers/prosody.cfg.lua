-- Prosody 0.12 with Satchel as its XEP-0363 HTTP File Upload service.
--
-- The part an operator needs is the block marked "Satchel" below: a component
-- port on loopback and a Component entry with a shared secret. Copy it into your
-- own /etc/prosody/prosody.cfg.lua (component_ports/component_interfaces are
-- global settings: put them above the first VirtualHost), and give Satchel the
-- same values in its config:
--
--   [component]
--   jid    = "{{COMPONENT_JID}}"
--   server = "127.0.0.1:{{COMPONENT_PORT}}"
--   secret = "{{COMPONENT_SECRET}}"
--
-- Subdomain components show up in the host's disco#items by themselves, so
-- clients find the upload service without further configuration.
--
-- The rest of this file is a minimal standalone server, the one Satchel's test
-- suite runs (tests/harness/prosody.py fills in every placeholder in double braces). The
-- tests run it on loopback without TLS; in production keep Prosody's defaults
-- (c2s_require_encryption = true, allow_unencrypted_plain_auth = false).

---------- Server-wide settings (test instance) ----------
pidfile = "{{RUN_DIR}}/prosody.pid"
data_path = "{{DATA_DIR}}"
certificates = "{{CERT_DIR}}"
log = { debug = "{{LOG_DIR}}/prosody.debug.log"; info = "{{LOG_DIR}}/prosody.log" }

interfaces = { "127.0.0.1" }
c2s_ports = { {{C2S_PORT}} }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = { }
modules_disabled = { "s2s" }

modules_enabled = {
	"roster"; "saslauth"; "disco"; "ping"; "time"; "version"; "uptime"; "posix";
}

authentication = "internal_plain"
allow_registration = false
c2s_require_encryption = {{C2S_REQUIRE_ENCRYPTION}}
allow_unencrypted_plain_auth = {{ALLOW_UNENCRYPTED_PLAIN_AUTH}}

---------- Satchel (copy this part) ----------
-- Where external components (XEP-0114) connect. Keep it on loopback, or on a
-- private interface that only Satchel's host can reach.
component_ports = { {{COMPONENT_PORT}} }
component_interfaces = { "127.0.0.1" }
---------- end of Satchel's global part ----------

VirtualHost "{{DOMAIN}}"

---------- Satchel (copy this part, after your VirtualHost) ----------
Component "{{COMPONENT_JID}}"
	component_secret = "{{COMPONENT_SECRET}}"
---------- end of Satchel's part ----------
