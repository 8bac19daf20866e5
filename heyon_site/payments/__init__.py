"""Payments: the providers' notification endpoints, the raw callback log, starting a checkout,
and reconciliation (asking providers about orders a notification never settled)."""

from heyon_site.payments.notify import bp

__all__ = ["bp"]
