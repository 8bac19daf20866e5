"""Delivering the outbox: messages written with the money movements that cause them
(billing/notices.py), sent by `flask outbox work` through a channel per kind (channels.py)."""
