-- Version 4: what a device's last signed status said of its store: the
-- records it holds and its estimate of how many it holds when full
-- (protocol/SPEC.md, "Status"), and the device's account counter at that
-- report, so that placement counts the accounts placed since on top of the
-- records. 0, 0 and 0 until its host has polled it with this version.
ALTER TABLE devices ADD COLUMN records BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN record_capacity BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN accounts_reported BIGINT NOT NULL DEFAULT 0;
