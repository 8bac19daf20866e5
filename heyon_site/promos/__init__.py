"""Promotions as staff and operators handle them: `flask promos` and the audited changes the
staff screens share (the terms, quotes and caps themselves are billing's)."""
