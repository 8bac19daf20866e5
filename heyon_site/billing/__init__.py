"""The money core, a leaf: money (integer fen), the ledger and its proof, recharge orders and the
provider events that move them, promotions' terms, receipts' content.

It imports nothing from Flask, the providers, payments or the web layer: callers pass the
database session and the settings in.
"""
