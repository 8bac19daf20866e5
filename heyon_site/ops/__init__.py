"""Running the site: structured logs, metrics, alarms, the audit log, backups and the ledger
proof's command."""
