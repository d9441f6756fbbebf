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
-- Relayed files (XEP-0033 multicast to Satchel) reach recipients who are
-- offline through the server's offline storage: mod_offline, which Prosody
-- loads by default. Optionally, the block marked "optional [privilege]" grants
-- Satchel XEP-0356 permissions, so that a relayed file comes from its sender
-- rather than from Satchel, and Satchel sees which users are online.
--
-- The rest of this file is a minimal standalone server, the one Satchel's test
-- suite runs (tests/harness/prosody.py fills in every placeholder in double braces,
-- and keeps or drops each block marked "optional [NAME]"). The
-- tests run it on loopback, offering STARTTLS with a throwaway certificate in
-- {{CERT_DIR}} (the real clients they drive insist on TLS) but not requiring
-- it; in production keep Prosody's defaults (c2s_require_encryption = true,
-- allow_unencrypted_plain_auth = false).

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

-- Not listed because Prosody loads them anyway: presence, message, iq, and
-- offline (XEP-0160 offline storage, advertised as "msgoffline" in the host's
-- disco#info).
modules_enabled = {
	"roster"; "saslauth"; "tls"; "disco"; "ping"; "time"; "version"; "uptime"; "posix";
}

-- Prosody's default for a logged-in client is 256 KiB; the tests raise it so
-- that oversized requests (e.g. a relay naming 10 000 recipients) reach Satchel.
c2s_stanza_size_limit = {{C2S_STANZA_SIZE_LIMIT}}

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
---------- optional [no-offline]: no offline storage on this host ----------
-- Without mod_offline a message to an offline user is bounced (or, when
-- Satchel sends it with XEP-0356 privilege, dropped). Satchel then keeps the
-- relayed file in its outbox and retries; the tests check that. Leave this
-- out unless you mean to run without offline storage.
	modules_disabled = { "offline" }
---------- end of optional [no-offline] ----------
---------- Satchel, optional [privilege]: XEP-0356 privileged entity ----------
-- Lets Satchel send a relayed file as its sender (bob's client shows it in the
-- chat with alice, not as a message from {{COMPONENT_JID}}), and forwards the
-- presence of this host's users to Satchel, so it knows who is online.
-- mod_privilege is in Debian's prosody-modules package. It must be enabled in
-- this VirtualHost and in the Component below (that part is marked too), and
-- the permissions are given here, in the VirtualHost (presence = "roster"
-- works only together with roster = "get"; "managed_entity" is enough).
-- Without them Satchel sends from its own JID and names the sender.
	modules_enabled = { "privilege" }
	privileged_entities = {
		["{{COMPONENT_JID}}"] = { message = "outgoing"; presence = "managed_entity" };
	}
---------- end of optional [privilege] ----------

---------- Satchel (copy this part, after your VirtualHost) ----------
Component "{{COMPONENT_JID}}"
	component_secret = "{{COMPONENT_SECRET}}"
---------- optional [privilege]: mod_privilege on the component too ----------
	modules_enabled = { "privilege" }
---------- end of optional [privilege] ----------
---------- end of Satchel's part ----------
