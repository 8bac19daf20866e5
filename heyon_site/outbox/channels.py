"""How a message leaves: one channel for e-mail, one for SMS, chosen by configuration.

A channel sends one rendered message or raises: ``TemporaryFailure`` (try again later: a timeout,
a 5xx, a rate limit) or ``PermanentFailure`` (this message will never go: a rejected address, a
template the provider does not know); the worker backs off, or gives up into the dead letters.
The embedded default for both is ``log``: the message is written to the log (masked recipient,
never a card password), so `make run` shows what would go out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from heyon_site.ops.logs import mask_contact

log = logging.getLogger(__name__)


class TemporaryFailure(Exception):
    """Not sent this time; the same message is tried again later."""


class PermanentFailure(Exception):
    """This message can never be sent as it is; it goes to the dead letters at once."""


@dataclass(frozen=True)
class Outgoing:
    """A message as a channel sends it: rendered in the customer's language."""

    key: str  # unique; the provider's idempotency key where it takes one
    recipient: str
    template: str
    params: Mapping[str, str]
    locale: str
    subject: str
    text: str


class Channel(Protocol):
    name: str

    def send(self, message: Outgoing) -> None: ...


class LogChannel:
    """Writes the message to the log instead of sending it (the embedded default)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def send(self, message: Outgoing) -> None:
        log.info(
            "%s to %s (%s, %s): %s",
            self.name,
            mask_contact(message.recipient),
            message.template,
            message.key,
            message.text,
        )
