"""The staff pages' words for the values the database keeps as codes.

Statuses, kinds, roles, outcomes and audit actions are stored as short English codes
(``percent_bonus``, ``paid_again``, ``promo.end``) that other code, logs and metrics rely on. A
person reads them here, in their own language: every page goes through these tables, and
``tests/staff/test_words.py`` renders every staff page in both languages and finds no code.
A code missing from a table is shown as itself, marked as a code, rather than hidden: a new
value is still readable, and the test names the table to extend.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from heyon_site.billing import invoices, notices
from heyon_site.billing.money import yuan
from heyon_site.billing.promos import Terms
from heyon_site.customer.forms import PROVIDER_LABELS
from heyon_site.models import (
    EVENT_KINDS,
    INVOICE_BUYERS,
    INVOICE_STATES,
    LEDGER_KINDS,
    ORDER_STATES,
    OUTBOX_CHANNELS,
    OUTBOX_STATES,
    PROMO_KINDS,
    REFUND_ORIGINS,
    REFUND_STATES,
    RESOLUTION_ACTIONS,
    RESOLUTION_STATES,
    STAFF_ROLES,
    VOUCHER_BATCH_STATES,
    VOUCHER_STATES,
    PaymentEvent,
)

ORDER_STATUS = {
    "pending": _l("Waiting for payment"),
    "credited": _l("Credited"),
    "failed": _l("Payment failed"),
    "expired": _l("Expired"),
    "review": _l("Needs review"),
}

# ``RechargeOrder.status_reason``: why an order left the usual path.
STATUS_REASON = {
    "amount_mismatch": _l("the amount paid differs from the order"),
    "paid_after_close": _l("paid after the order was closed"),
    "closed_by_provider": _l("closed at the provider"),
    "money_returned": _l("money returned at the provider"),
    "timeout": _l("not paid in time"),
}

ROLE = {
    "cashier": _l("Cashier"),
    "editor": _l("Editor"),
    "admin": _l("Administrator"),
}

PROMO_KIND = {
    "fixed_bonus": _l("Fixed bonus"),
    "percent_bonus": _l("Percentage bonus"),
    "discount": _l("Discount"),
}

# ``promos.lifecycle.live_state``
PROMO_STATE = {
    "draft": _l("Draft"),
    "awaiting approval": _l("Awaiting approval"),
    "scheduled": _l("Scheduled"),
    "running": _l("Running"),
    "ended": _l("Ended"),
}

LEDGER_KIND = {
    "opening": _l("Opening balance"),
    "recharge": _l("Recharge"),
    "bonus": _l("Bonus"),
    "adjustment": _l("Adjustment"),
    "usage": _l("Usage"),
}

# Messages to customers (``OutboxMessage``): how they go, where they stand, what they say.
OUTBOX_CHANNEL = {"sms": _l("SMS"), "email": _l("E-mail")}
OUTBOX_STATUS = {
    "pending": _l("Waiting to be sent"),
    "sent": _l("Sent"),
    "dead": _l("Given up"),
}
OUTBOX_TEMPLATE = {
    notices.RECHARGE_CREDITED: _l("Recharge credited"),
    notices.LOW_BALANCE: _l("Balance low"),
    invoices.INVOICE_ISSUED: _l("Invoice issued"),
}
# Invoice requests (``InvoiceRequest.state``, ``buyer_kind``).
INVOICE_STATE = {"requested": _l("Waiting to be issued"), "issued": _l("Issued"), "refused": _l("Refused")}
INVOICE_BUYER = {"personal": _l("Person"), "company": _l("Company")}
# Recharge vouchers: a batch's state, and a voucher's (``expired``: an unused one past its last day).
VOUCHER_BATCH_STATE = {"created": _l("Not active yet"), "active": _l("Active"), "voided": _l("Voided")}
VOUCHER_STATUS = {
    "created": _l("Not active yet"),
    "active": _l("Usable"),
    "used": _l("Used"),
    "voided": _l("Voided"),
    "expired": _l("Expired"),
}

# What a verified provider event said (``PaymentEvent.kind``); amounts are filled in.
EVENT_SAID = {
    "paid": _l("payment succeeded, ¥%(amount)s"),
    "closed": _l("payment closed without being paid"),
    "refunded": _l("money returned to the payer, ¥%(amount)s"),
}

# What a callback said when no event of its own was recorded (``ProviderCallback.outcome``).
CALLBACK_SAID = {
    "bad_signature": _l("signature refused"),
    "malformed": _l("not a message in the provider's format"),
    "ignored": _l("a notice that asks nothing of us"),
    "duplicate": _l("the same notice again"),
    "unknown_order": _l("a payment for no order of ours at this provider"),
    "received": _l("a notice not yet read"),
}

# What we did: ``billing.recharge.apply_event``'s outcomes, and those of refused callbacks.
OUTCOME = {
    "credited": _l("Credited the card"),
    "duplicate": _l("Already on record: acknowledged, nothing done again"),
    "unknown_order": _l("No such order at this provider: nothing done"),
    "amount_mismatch": _l("The amount differs from the order: held for review"),
    "paid_again": _l("A second payment of a credited order: held for a person"),
    "review": _l("Paid after the order was closed: held for review"),
    "failed": _l("Marked the order as failed"),
    "refunded": _l("Flagged the order for a person; the card was not debited"),
    "refund_succeeded": _l("Our refund arrived with the payer"),
    "refund_failed": _l("Our refund failed at the provider: a person decides again"),
    "ignored": _l("Acknowledged; nothing to do"),
    "bad_signature": _l("Refused: not proven to come from the provider"),
    "malformed": _l("Refused: unreadable"),
    "received": _l("Stored, but no outcome was recorded"),
    "processing": _l("Being applied"),
}

AUDIT_ACTION = {
    "login.success": _l("Signed in"),
    "login.password_ok": _l("Password accepted, code asked for"),
    "login.credentials": _l("Sign-in refused: wrong username or password"),
    "login.throttled": _l("Sign-in refused: too many attempts"),
    "login.locked": _l("Sign-in refused: locked out"),
    "login.code_credentials": _l("Code refused: wrong or used already"),
    "login.code_throttled": _l("Code refused: too many attempts"),
    "login.code_locked": _l("Code refused: locked out"),
    "logout": _l("Signed out"),
    "account.password": _l("Changed own password"),
    "account.totp_on": _l("Turned own second factor on"),
    "account.totp_off": _l("Turned own second factor off"),
    "staff.create": _l("Created a staff account"),
    "staff.edit": _l("Changed a staff account"),
    "staff.password_reset": _l("Set a staff account's password"),
    "staff.totp_reset": _l("Reset a staff account's second factor"),
    "card.unblock": _l("Unblocked a card"),
    "card.forget": _l("Deleted a card's personal data"),
    "cards.issue": _l("Issued cards"),
    "receipt.print": _l("Printed a receipt"),
    "export.csv": _l("Downloaded a finance export (CSV)"),
    "faq.create": _l("Added a question"),
    "faq.edit": _l("Edited a question"),
    "faq.publish": _l("Published a question"),
    "faq.unpublish": _l("Unpublished a question"),
    "faq.move_up": _l("Moved a question up"),
    "faq.move_down": _l("Moved a question down"),
    "promo.create": _l("Created a promotion"),
    "promo.edit": _l("Edited a promotion"),
    "promo.unpublish": _l("Unpublished a promotion"),
    "promo.change_request": _l("Asked to change a published promotion"),
    "promo.change_withdraw": _l("Withdrew a waiting change"),
    "promo.publish_request": _l("Asked to publish a promotion"),
    "promo.end": _l("Ended a promotion"),
    "promo.reject": _l("Rejected a promotion or its change"),
    "promo.publish": _l("Approved and published a promotion"),
    "promo.change_approve": _l("Approved a change to a promotion"),
    "payment.propose": _l("Proposed what to do with a payment not credited"),
    "payment.approve": _l("Approved what to do with a payment not credited"),
    "payment.reject": _l("Rejected a proposal about a payment not credited"),
    "voucher.create": _l("Made a batch of vouchers"),
    "voucher.activate": _l("Activated a batch of vouchers"),
    "voucher.activate_request": _l("Asked for a batch of vouchers to be activated"),
    "voucher.activate_approve": _l("Approved the activation of a batch of vouchers"),
    "voucher.void_batch": _l("Voided a batch of vouchers"),
    "voucher.void": _l("Voided a voucher"),
    "voucher.sheet": _l("Printed a voucher sheet from a batch's file"),
    "invoice.issue": _l("Issued an invoice (uploaded its PDF)"),
    "invoice.refuse": _l("Refused an invoice request"),
}

# Where a payment that credited nothing stands (billing.refunds.state_of).
CASE_STATE = {
    "waiting": _l("Waiting for a person"),
    "proposed": _l("Proposed: waiting for another person's approval"),
    "refunding": _l("Refund sent: waiting for the provider"),
    "credited": _l("Credited to the card by decision"),
    "refunded": _l("Refunded to the payer"),
    "refund_failed": _l("The refund failed: decide again"),
}
REFUND_STATUS = {
    "pending": _l("Pending at the provider"),
    "succeeded": _l("Succeeded"),
    "failed": _l("Failed"),
}
SETTLEMENT_DIFFERENCE = {
    "missing_here": _l("Only at the provider (we asked it about the order)"),
    "missing_there": _l("Only in our books"),
    "amount_differs": _l("The amounts differ"),
}
STATEMENT_KIND = {"payment": _l("payment"), "refund": _l("refund")}
RESOLUTION_ACTION = {"credit": _l("Credit the amount paid to the card"), "refund": _l("Refund it to the payer")}
RESOLUTION_STATE = {"proposed": _l("Proposed"), "approved": _l("Approved"), "rejected": _l("Rejected")}
REFUND_ORIGIN = {"resolution": _l("decided by two people"), "auto": _l("by rule, automatically")}

# The outcomes of promotion steps, as the audit rows' summaries end with them in parentheses.
PROMO_STEP = {
    "edited": _l("edited"),
    "unpublished": _l("unpublished"),
    "withdrawn": _l("withdrawn"),
    "changes_requested": _l("change asked for"),
    "changes_withdrawn": _l("change withdrawn"),
    "requested": _l("publication asked for"),
    "published": _l("published"),
    "changes_approved": _l("change approved"),
    "publication_rejected": _l("publication rejected"),
    "changes_rejected": _l("change rejected"),
    "ended": _l("ended"),
    "changes awaiting approval": _l("changes awaiting approval"),
}


def _word(table: Mapping[str, object], code: str | None) -> str | Markup:
    if code is None:
        return ""
    found = table.get(code)
    # Unknown: shown as what it is, a code, so a new value is never silently dropped.
    return str(found) if found is not None else Markup("<code>%s</code>") % code


def _reader(table: Mapping[str, object]) -> Callable[[str | None], str | Markup]:
    """The words of one table's codes, as a function the pages call (``words.role(code)``)."""

    def read(code: str | None) -> str | Markup:
        return _word(table, code)

    return read


# What the pages call: ``words.role(code)`` and the like.
order_status = _reader(ORDER_STATUS)
status_reason = _reader(STATUS_REASON)
role = _reader(ROLE)
promo_kind = _reader(PROMO_KIND)
promo_state = _reader(PROMO_STATE)
ledger_kind = _reader(LEDGER_KIND)
outcome = _reader(OUTCOME)
provider = _reader(PROVIDER_LABELS)  # by the name customers see on the recharge form
audit_action = _reader(AUDIT_ACTION)
case_state = _reader(CASE_STATE)
refund_status = _reader(REFUND_STATUS)
resolution_action = _reader(RESOLUTION_ACTION)
resolution_state = _reader(RESOLUTION_STATE)
refund_origin = _reader(REFUND_ORIGIN)
settlement_difference = _reader(SETTLEMENT_DIFFERENCE)
statement_kind = _reader(STATEMENT_KIND)
outbox_channel = _reader(OUTBOX_CHANNEL)
outbox_status = _reader(OUTBOX_STATUS)
outbox_template = _reader(OUTBOX_TEMPLATE)
voucher_batch_state = _reader(VOUCHER_BATCH_STATE)
voucher_status = _reader(VOUCHER_STATUS)
invoice_state = _reader(INVOICE_STATE)
invoice_buyer = _reader(INVOICE_BUYER)

# How an order's status badge looks: done, waiting, needs a person, over.
STATUS_TONE = {"credited": "ok", "pending": "warn", "review": "bad", "failed": "", "expired": ""}


def status_tone(code: str) -> str:
    return STATUS_TONE.get(code, "")


# An audit row's target is "<what> <which>": "promotion 5", "staff dave", "order 2024...".
AUDIT_TARGET = {
    "promotion": _l("Promotion %(which)s"),
    "faq": _l("Question %(which)s"),
    "staff": _l("Staff account %(which)s"),
    "order": _l("Order %(which)s"),
    "card": _l("Card %(which)s"),
    "orders": _l("Orders export %(which)s"),
    "payments": _l("Payments export %(which)s"),
    "refunds": _l("Refunds export %(which)s"),
    "ledger": _l("Ledger export %(which)s"),
    "batch": _l("Voucher batch %(which)s"),
    "voucher": _l("Voucher %(which)s"),
}


def audit_target(text: str | None) -> str:
    what, _, which = (text or "").partition(" ")
    found = AUDIT_TARGET.get(what)
    return str(found) % {"which": which} if found is not None and which else text or ""


def event_said(event: PaymentEvent) -> str | Markup:
    """What a provider event told us, with its amount: "payment succeeded, ¥100.00"."""
    said = EVENT_SAID.get(event.kind)
    return str(said) % {"amount": yuan(event.amount_fen)} if said is not None else _word({}, event.kind)


callback_said = _reader(CALLBACK_SAID)


def terms(t: Terms) -> str:
    """A promotion's terms in one line of the reader's language (``billing.promos.describe``
    is the audit log's and the command line's, in codes)."""
    cap = t.cap_fen
    if t.kind == "fixed_bonus":
        line = gettext("¥%(bonus)s bonus", bonus=yuan(t.value_fen or 0))
    else:
        rate = yuan(t.percent_bp or 0).removesuffix(".00")
        line = (
            gettext("%(rate)s%% bonus", rate=rate)
            if t.kind == "percent_bonus"
            else gettext("%(rate)s%% off", rate=rate)
        )
        if cap is not None:
            line = gettext("%(terms)s, at most ¥%(cap)s", terms=line, cap=yuan(cap))
    return str(gettext("%(terms)s, from ¥%(threshold)s", terms=line, threshold=yuan(t.threshold_fen)))


# The fields audit summaries name (``k=v; k=v``), as the forms that change them call them.
AUDIT_FIELD = {
    "title_zh": _l("Chinese title"),
    "title_en": _l("English title"),
    "terms": _l("Terms"),
    "starts": _l("Starts"),
    "ends": _l("Ends (exclusive)"),
    "priority": _l("Priority"),
    "state": _l("Status"),
    "changes": _l("Changes awaiting approval"),
    "role": _l("Role"),
    "active": _l("Can sign in"),
    "totp_required": _l("Second factor required"),
    "locale": _l("Language"),
    "category": _l("Category"),
    "question": _l("Question"),
    "answer_md": _l("Answer (Markdown)"),
    "position": _l("Position"),
    "published": _l("Published"),
    "paper": _l("Paper"),
    "opening_balance": _l("Opening balance"),
    "with_phone": _l("With a phone number"),
    "emails_deleted": _l("Orders whose e-mail address was deleted"),
    "messages_deleted": _l("Messages not sent, deleted"),
    "recipients_deleted": _l("Messages whose recipient was deleted"),
    "count": _l("How many"),
    "value": _l("Value"),
    "expires": _l("Last day of use"),
    "total": _l("Total value"),
    "note": _l("Note"),
    "voided": _l("Vouchers voided"),
    "pdf_size": _l("PDF size (bytes)"),
    "pdf_sha256": _l("PDF SHA-256"),
    "reason": _l("Reason"),
}
FLAG = {"True": _l("Yes"), "False": _l("No"), "true": _l("Yes"), "false": _l("No")}

# Every table of codes whose words may appear in a summary's values and in the outcome in
# parentheses at its end. Longest codes first, so "changes awaiting approval" wins over
# "awaiting approval".
_SUMMARY_TABLES = (PROMO_KIND, PROMO_STATE, PROMO_STEP, ROLE, ORDER_STATUS, STATUS_REASON, FLAG)
_SUMMARY_WORDS = {code: words for table in _SUMMARY_TABLES for code, words in table.items()}
_SUMMARY_CODE = re.compile(
    r"(?<=[=(\"])(" + "|".join(re.escape(c) for c in sorted(_SUMMARY_WORDS, key=len, reverse=True)) + r")\b"
)
_SUMMARY_FIELD = re.compile(r"(?:^|(?<=; ))([a-z][a-z0-9_]*)=")


# An approval's summary ends "(published; edited by NAME)" (promos.services.approve).
_EDITED_BY = re.compile(r"; edited by ([^)]*)\)$")


def _value_words(text: str) -> str:
    # Only a code that starts a value, its quoted text or a parenthesis is replaced, whole: what
    # people typed (titles, questions, usernames) is shown as written.
    text = _EDITED_BY.sub(lambda m: "; " + gettext("Terms by %(name)s", name=m.group(1)) + ")", text)
    return _SUMMARY_CODE.sub(lambda m: str(_SUMMARY_WORDS[m.group(1)]), "=" + text)[1:]


def audit_summary(text: str | None) -> str:
    """An audit row's ``before``/``after`` summary for people: each ``field=value`` as the field's
    label and the value with its codes in words. The row itself keeps the codes."""
    if not text:
        return ""
    fields = list(_SUMMARY_FIELD.finditer(text))
    if not fields:
        return _value_words(text)
    parts = [_value_words(text[: fields[0].start()])] if fields[0].start() else []
    for i, m in enumerate(fields):
        end = fields[i + 1].start() - 2 if i + 1 < len(fields) else len(text)
        label = AUDIT_FIELD.get(m.group(1))
        value = _value_words(text[m.end() : end])
        parts.append(
            gettext("%(field)s: %(value)s", field=str(label), value=value) if label else f"{m.group(1)}={value}"
        )
    return "; ".join(parts)


def every_code() -> dict[str, tuple[str, ...]]:
    """The codes each table must cover, from where they are defined (the tests read this)."""
    return {
        "ORDER_STATUS": ORDER_STATES,
        "ROLE": STAFF_ROLES,
        "PROMO_KIND": PROMO_KINDS,
        "LEDGER_KIND": LEDGER_KINDS,
        "EVENT_SAID": EVENT_KINDS,
        "REFUND_STATUS": REFUND_STATES,
        "RESOLUTION_ACTION": RESOLUTION_ACTIONS,
        "RESOLUTION_STATE": RESOLUTION_STATES,
        "REFUND_ORIGIN": REFUND_ORIGINS,
        "OUTBOX_CHANNEL": OUTBOX_CHANNELS,
        "OUTBOX_STATUS": OUTBOX_STATES,
        "OUTBOX_TEMPLATE": (*notices.TEMPLATES, invoices.INVOICE_ISSUED),
        "VOUCHER_BATCH_STATE": VOUCHER_BATCH_STATES,
        "VOUCHER_STATUS": (*VOUCHER_STATES, "expired"),
        "INVOICE_STATE": INVOICE_STATES,
        "INVOICE_BUYER": INVOICE_BUYERS,
    }
