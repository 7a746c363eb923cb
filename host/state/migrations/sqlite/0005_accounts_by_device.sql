-- Version 5: the accounts of a device, in name order, for `cofferd device
-- evacuate` (UnplaceFrom), whose batches each read their own range of it
-- from where the last one ended, rather than scanning every account. On a large table this index takes a while to build:
-- run the migration in a quiet hour (OPERATIONS.md, "State").
CREATE INDEX accounts_device ON accounts (device, name);
