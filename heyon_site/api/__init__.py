"""The API other systems call, under /api/v1: the network's usage charges and card balances.

A stable interface (README: Interfaces other systems rely on). The blueprint and what every
request goes through (the client's signature, JSON errors) are in ``blueprint.py``; the routes
in ``usage.py`` add themselves to it, so ``create_app`` only registers ``bp``.
"""

from heyon_site.api import usage
from heyon_site.api.blueprint import bp

VIEWS = (usage,)
__all__ = ["bp"]
