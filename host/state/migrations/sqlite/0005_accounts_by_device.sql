-- Version 5: the accounts of a device, in name order, for `cofferd device
-- evacuate` (UnplaceFrom), which would otherwise scan every account for
-- each batch it moves. On a large table this index takes a while to build:
-- run the migration in a quiet hour (OPERATIONS.md, "State").
CREATE INDEX accounts_device ON accounts (device, name);
