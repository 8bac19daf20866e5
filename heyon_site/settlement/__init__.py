"""Settlement: each provider's daily statement against our books (``flask settlement run``)."""
