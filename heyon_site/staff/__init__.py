"""Staff back office: sign-in, roles, orders and receipt reprints, the audit log."""
