"""The sandbox gateway: a simulated hosted payment page, registered only on a site whose only
provider is the sandbox."""

from heyon_site.sandbox.views import bp, notify_refund

__all__ = ["bp", "notify_refund"]
