-- Benchmark only: appended after the last Component of
-- examples/servers/prosody.cfg.lua by examples/bench/servers.py. Prosody's own
-- XEP-0363 service, configured like Satchel: the same largest file, quotas out
-- of the way. Uploads stay on Prosody's own data directory (plain files, no
-- encryption).
Component "{{SHARE_JID}}" "http_file_share"
	http_file_share_size_limit = {{MAX_FILE_SIZE}}
	-- Per-user bytes per day (default 10 x the size limit) and total storage
	-- (default unlimited): out of the way.
	http_file_share_daily_quota = {{DAILY_QUOTA}}
	http_file_share_expires_after = 86400
	-- Each slot is a record in the component's "uploads" archive, and Prosody's
	-- internal storage caps an archive at 10 000 items (after which every slot
	-- request fails with undefined-condition): out of the way too.
	storage_archive_item_limit = {{ARCHIVE_ITEM_LIMIT}}
	-- PUT/GET URLs on 127.0.0.1 (module:http_url() would name the component's
	-- own host, which does not resolve); requests are routed by the Host
	-- header, so the routes are registered on 127.0.0.1 as well.
	http_host = "127.0.0.1"
