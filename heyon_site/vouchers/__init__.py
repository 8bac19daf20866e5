"""Recharge vouchers as staff and operators handle them: `flask vouchers`, the audited changes the
staff vouchers screen shares with it, and the PIN file and printable sheet both hand out (the
vouchers themselves, their PINs' digests and their use are billing's)."""
