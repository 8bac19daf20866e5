"""Thin typed models. Money is always integer fen (``BigInteger``), never Decimal or float.

Rules that protect money live in the schema, not only in Python: unique idempotency keys on
ledger entries and payment events, CHECK constraints on states and signs, and triggers (created
by the migration) that make ``ledger_entries`` append-only.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from heyon_site.extensions import Model

ORDER_STATES = ("pending", "credited", "failed", "expired", "review")
FINAL_STATES = frozenset({"credited", "failed", "expired"})
LEDGER_KINDS = ("opening", "recharge", "bonus", "adjustment", "usage")
USAGE_KINDS = ("voice", "data", "sms", "other")
OUTBOX_CHANNELS = ("email", "sms")
OUTBOX_STATES = ("pending", "sent", "dead")
EVENT_KINDS = ("paid", "closed", "refunded")
REFUND_STATES = ("pending", "succeeded", "failed")
#: Why a refund was asked for: two people decided (resolution), or a rule did (auto: a second
#: payment of a credited order, a payment of an order closed or expired).
REFUND_ORIGINS = ("resolution", "auto")
RESOLUTION_ACTIONS = ("credit", "refund")
RESOLUTION_STATES = ("proposed", "approved", "rejected")
#: Outcomes of a verified payment that credited nothing: each waits for a person or a rule.
UNCREDITED_OUTCOMES = ("amount_mismatch", "review", "paid_again")
#: A voucher batch: made (its PINs printed, not yet sold), active (the shop has it), voided.
VOUCHER_BATCH_STATES = ("created", "active", "voided")
#: One voucher: as its batch until used (it credited one order) or voided on its own.
VOUCHER_STATES = ("created", "active", "used", "voided")
#: The method of an order paid with a voucher, and the "provider" of its payment event.
VOUCHER_METHOD = "voucher"
INVOICE_BUYERS = ("personal", "company")
INVOICE_STATES = ("requested", "issued", "refused")


def utcnow() -> datetime:
    """Naive UTC: SQLite keeps no time zone, so every stored time is UTC by convention."""
    return datetime.now(UTC).replace(tzinfo=None)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Card(Model):
    __tablename__ = "cards"
    __table_args__ = (
        CheckConstraint(_in("status", ("active", "locked", "blocked")), name="status"),
        # A prepaid card never owes money; a credit can only raise the balance.
        CheckConstraint("balance_fen >= 0", name="balance_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The number itself is not stored: a card is found by a keyed hash of it (HMAC-SHA256, see
    # cards.numbers.number_digest), and receipts and staff searches need only the last four digits.
    # A plain hash would not do: 10 to 19 digits, most of them a known prefix, are quickly guessed.
    number_digest: Mapped[str] = mapped_column(String(64), unique=True)
    last4: Mapped[str] = mapped_column(String(4), index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="active")
    # A cache of SUM(ledger_entries.amount_fen), updated in the same transaction as each entry;
    # `flask ledger verify` proves the two agree.
    balance_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The card's phone number (E.164), for messages about it: personal data, masked wherever
    # shown, deleted by `flask cards forget`.
    msisdn: Mapped[str | None] = mapped_column(String(32), default=None)
    # Low-balance reminders, asked for on the balance page: below this many fen, at most one a day
    # (the last day one went out, Beijing time), in the language the customer asked in.
    low_balance_fen: Mapped[int | None] = mapped_column(BigInteger, default=None)
    low_balance_locale: Mapped[str | None] = mapped_column(String(10), default=None)
    low_balance_sent_on: Mapped[date | None] = mapped_column(Date, default=None)


class LoginThrottle(Model):
    """One failure counter of a card number or staff account, shared by all workers
    (``security/throttle.py``): the one of unknown devices, one per known device, and the allowance all
    known devices share.

    ``subject`` is a keyed hash of what was typed (the card number, the username), so unknown
    numbers are throttled exactly like real ones (nothing tells an attacker which exist) and no
    raw number is stored; every row of one card or account carries it, so a reset finds them all.
    """

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), index=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RechargeOrder(Model):
    __tablename__ = "recharge_orders"
    __table_args__ = (
        CheckConstraint(_in("status", ORDER_STATES), name="status"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint("pay_fen > 0", name="pay_positive"),
        CheckConstraint("bonus_fen >= 0", name="bonus_not_negative"),
        # The promotion caps the order was quoted under (NULL: made before they were recorded),
        # and its bonus and discount within them: integer arithmetic, no rounding to argue about.
        CheckConstraint("(bonus_cap_percent IS NULL) = (discount_cap_percent IS NULL)", name="caps_together"),
        CheckConstraint(
            "bonus_cap_percent IS NULL OR (bonus_cap_percent BETWEEN 0 AND 100 "
            "AND bonus_fen * 100 <= pay_fen * bonus_cap_percent)",
            name="bonus_within_cap",
        ),
        CheckConstraint(
            "discount_cap_percent IS NULL OR (discount_cap_percent BETWEEN 0 AND 99 "
            "AND (amount_fen - pay_fen) * 100 <= amount_fen * discount_cap_percent)",
            name="discount_within_cap",
        ),
        Index("ix_recharge_orders_status_created", "status", "created_at"),
        # The staff dashboard sums credited orders by the day they were credited.
        Index("ix_recharge_orders_status_finalized", "status", "finalized_at"),
        # Staff search by a date range alone, newest first (the search's ORDER BY).
        Index("ix_recharge_orders_created", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # What the customer reads to support; 16 digits, date first.
    order_no: Mapped[str] = mapped_column(String(24), unique=True)
    # What the order and receipt URLs carry: unguessable, unlike a number read over the phone.
    token: Mapped[str] = mapped_column(String(32), unique=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(10), default="pending")
    amount_fen: Mapped[int] = mapped_column(BigInteger)  # face value credited to the card
    pay_fen: Mapped[int] = mapped_column(BigInteger)  # what the customer pays
    bonus_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    promo_snapshot: Mapped[str | None] = mapped_column(Text, default=None)
    bonus_cap_percent: Mapped[int | None] = mapped_column(Integer, default=None)
    discount_cap_percent: Mapped[int | None] = mapped_column(Integer, default=None)
    provider_txn_id: Mapped[str | None] = mapped_column(String(255), default=None)
    paid_fen: Mapped[int | None] = mapped_column(BigInteger, default=None)
    status_reason: Mapped[str | None] = mapped_column(String(64), default=None)
    locale: Mapped[str] = mapped_column(String(10), default="zh_Hans")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finalized_at: Mapped[datetime | None] = mapped_column(default=None)
    # How the payment was started with the provider: its reference for later queries (a Stripe
    # session id), the page to continue paying on, and the text a desktop shows as a QR code.
    provider_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    pay_url: Mapped[str | None] = mapped_column(Text, default=None)
    pay_qr: Mapped[str | None] = mapped_column(Text, default=None)
    # A payment sheet opened inside the provider's app (WeChat JSAPI): its signed parameters, as
    # JSON, shown on the order page for WeChat's bridge to open.
    pay_jsapi: Mapped[str | None] = mapped_column(Text, default=None)
    # The digest of the one WeChat sign-in (OAuth ``state``) this order is waiting for; cleared
    # when it comes back, so a state is good once and only for this order.
    oauth_state: Mapped[str | None] = mapped_column(String(64), default=None)
    # Reconciliation: when the provider was last asked about this order (bounds how often the
    # customer's "check payment now" and cron ask).
    checked_at: Mapped[datetime | None] = mapped_column(default=None)
    # The recharge form that made it: its one-time id and what it asked for (card, amount,
    # method). A form sent again (Enter pressed three times, a retried POST) lands on this same
    # order instead of making another; the unique constraint holds that against concurrent repeats.
    submission_key: Mapped[str | None] = mapped_column(String(100), unique=True, default=None)
    # The terms changed between the page the customer saw and the order (a promotion started,
    # changed or ended): the order page shows the new ones and waits for the customer's "pay"
    # before the provider is asked for anything.
    needs_confirmation: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Why a person must look at the order whatever its status, and since when: the provider
    # reported money returned to the payer (billing.recharge.MONEY_RETURNED). The status and the
    # ledger stay as they were (a credited order stays credited); the staff dashboard lists these.
    attention: Mapped[str | None] = mapped_column(String(32), default=None)
    attention_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    # Where to send "recharge credited" besides the card's phone: given on the recharge form,
    # personal data (masked wherever shown, deleted by `flask cards forget`).
    email: Mapped[str | None] = mapped_column(String(254), default=None)

    card: Mapped[Card] = relationship(lazy="joined")

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATES

    @property
    def credited_fen(self) -> int:
        return self.amount_fen + self.bonus_fen


class LedgerEntry(Model):
    """One immutable money movement. Only ``billing.ledger.credit`` writes these."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint(_in("kind", LEDGER_KINDS), name="kind"),
        CheckConstraint("amount_fen <> 0", name="amount_nonzero"),
        Index("ix_ledger_entries_created", "created_at", "id"),  # the finance export's date range
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("recharge_orders.id"), index=True, default=None)
    kind: Mapped[str] = mapped_column(String(16))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    # The idempotency key: "order:<id>:recharge", "card:<id>:opening" ... A second credit with
    # the same key is refused by the database, whatever the application does.
    key: Mapped[str] = mapped_column(String(80), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PaymentEvent(Model):
    """One verified provider notification, unique per provider, transaction and kind (for a
    refund, the transaction is the provider's refund: each refund is recorded once)."""

    __tablename__ = "payment_events"
    __table_args__ = (
        UniqueConstraint("provider", "provider_txn_id", "kind", name="uq_payment_events_txn"),
        CheckConstraint(_in("kind", EVENT_KINDS), name="kind"),
        Index("ix_payment_events_created", "created_at", "id"),  # exports, settlement's day
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    provider_txn_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(10))
    order_id: Mapped[int] = mapped_column(ForeignKey("recharge_orders.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The day (Beijing) of the provider's statement that named this payment: recorded on another
    # day (a late notice, reconciliation), it is never "missing" from the day it was recorded on.
    statement_day: Mapped[date | None] = mapped_column(Date, default=None)
    # A refunded event about a refund this site asked for (by its refund number): money that left
    # as two people or a rule decided, not a return someone made in the provider's console. No
    # foreign key: refunds already point at payment_events, and a cycle of keys makes every
    # insert and drop order ambiguous; billing.recharge sets it from a refund it just read.
    refund_id: Mapped[int | None] = mapped_column(Integer, default=None)


class Resolution(Model):
    """What to do with a verified payment that credited nothing: proposed by one member of staff,
    approved or rejected by an admin who is not the proposer. Nothing moves on a proposal."""

    __tablename__ = "payment_resolutions"
    __table_args__ = (
        CheckConstraint(_in("action", RESOLUTION_ACTIONS), name="action"),
        CheckConstraint(_in("state", RESOLUTION_STATES), name="state"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint("decided_by IS NULL OR decided_by <> proposed_by", name="two_people"),
        CheckConstraint("(state = 'proposed') = (decided_by IS NULL)", name="decided_when_not_proposed"),
        # One open proposal per payment. Resolved once: a credit by its ledger key, a refund by
        # the refunds' own index (a failed refund lets people decide again).
        Index(
            "uq_payment_resolutions_open",
            "payment_event_id",
            unique=True,
            sqlite_where=text("state = 'proposed'"),
            postgresql_where=text("state = 'proposed'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payment_event_id: Mapped[int] = mapped_column(ForeignKey("payment_events.id"), index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("recharge_orders.id"), index=True)
    action: Mapped[str] = mapped_column(String(10))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(500))
    state: Mapped[str] = mapped_column(String(10), default="proposed")
    proposed_by: Mapped[int] = mapped_column(ForeignKey("staff_users.id"))
    proposed_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)


class Refund(Model):
    """Money of one verified payment sent back through its provider. ``refund_no`` is ours,
    unique, and the provider's idempotency key: a retry is the same request. The state moves
    only by what the provider says (its answer, a notification, a query), never by assumption."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint(_in("status", REFUND_STATES), name="status"),
        CheckConstraint(_in("origin", REFUND_ORIGINS), name="origin"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint("(origin = 'resolution') = (resolution_id IS NOT NULL)", name="resolution_when_decided"),
        # A payment is returned at most once: a failed refund may be followed by another
        # decision, never by a second refund while one is pending or done.
        Index(
            "uq_refunds_live_payment",
            "payment_event_id",
            unique=True,
            sqlite_where=text("status IN ('pending', 'succeeded')"),
            postgresql_where=text("status IN ('pending', 'succeeded')"),
        ),
        Index("ix_refunds_status", "status", "next_attempt_at"),
        Index("ix_refunds_created", "created_at", "id"),  # the finance export's date range
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    refund_no: Mapped[str] = mapped_column(String(32), unique=True)
    payment_event_id: Mapped[int] = mapped_column(ForeignKey("payment_events.id"), index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("recharge_orders.id"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    origin: Mapped[str] = mapped_column(String(12))
    resolution_id: Mapped[int | None] = mapped_column(ForeignKey("payment_resolutions.id"), default=None)
    provider_refund_id: Mapped[str | None] = mapped_column(String(128), default=None)
    # The provider's own word for the state (a status or error code), for staff.
    detail: Mapped[str | None] = mapped_column(String(120), default=None)
    # Whether the provider has accepted the request at least once (then it is asked about, not
    # asked again), how often it was tried, and when to try next (backoff after no answer).
    sent: Mapped[bool] = mapped_column(default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # The day (Beijing) of the provider's statement that named this refund (see PaymentEvent's).
    statement_day: Mapped[date | None] = mapped_column(Date, default=None)


class UsageCharge(Model):
    """One charge the network's charging system posted (``POST /api/v1/usage``), applied once:
    unique per client and the client's own id. ``applied`` debited the card (a ``usage`` ledger
    entry keyed by the same pair); ``refused`` did not, and says why."""

    __tablename__ = "usage_charges"
    __table_args__ = (
        UniqueConstraint("client", "charge_id", name="uq_usage_charges_client_charge"),
        CheckConstraint(_in("kind", USAGE_KINDS), name="kind"),
        CheckConstraint(_in("status", ("applied", "refused")), name="status"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        Index("ix_usage_charges_card", "card_id", "charged_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client: Mapped[str] = mapped_column(String(40))
    charge_id: Mapped[str] = mapped_column(String(64))
    card_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id"), default=None)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(8))
    description: Mapped[str] = mapped_column(String(200), default="")
    charged_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxMessage(Model):
    """A message to a customer, written in the same transaction as the change that causes it
    (a credit, a debit), so none is lost or sent for a change rolled back; delivered by
    `flask outbox work`. ``key`` is unique and is the idempotency key the provider receives."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        CheckConstraint(_in("channel", OUTBOX_CHANNELS), name="channel"),
        CheckConstraint(_in("status", OUTBOX_STATES), name="status"),
        Index("ix_outbox_messages_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    channel: Mapped[str] = mapped_column(String(8))
    # A phone number or an e-mail address: personal data, masked wherever shown.
    recipient: Mapped[str] = mapped_column(String(254))
    template: Mapped[str] = mapped_column(String(32))
    params: Mapped[str] = mapped_column(Text, default="{}")  # JSON; never a card password
    locale: Mapped[str] = mapped_column(String(10), default="zh_Hans")
    card_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id"), index=True, default=None)
    status: Mapped[str] = mapped_column(String(8), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)


class Settlement(Model):
    """One provider's statement of one day (Beijing time) matched against our books: the counts,
    the fees the provider took, where the raw file is archived, and the differences to act on."""

    __tablename__ = "settlements"
    __table_args__ = (UniqueConstraint("provider", "day", name="uq_settlements_provider_day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    day: Mapped[date] = mapped_column(Date)
    matched: Mapped[int] = mapped_column(Integer)
    missing_here: Mapped[int] = mapped_column(Integer)
    missing_there: Mapped[int] = mapped_column(Integer)
    amount_differs: Mapped[int] = mapped_column(Integer)
    fees_fen: Mapped[int] = mapped_column(BigInteger)
    archive: Mapped[str | None] = mapped_column(String(500), default=None)
    # JSON: one object per difference (what, order_no, reference, ours_fen, theirs_fen).
    differences: Mapped[str] = mapped_column(Text, default="[]")
    ran_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProviderCallback(Model):
    """Every callback received, with what became of it. A verified one is kept whole, and
    stored before its event is applied; of a refused one (not provably from the provider, or not
    of its form) only the first bytes, the digest and the size, so that nobody can fill the
    database by posting junk (payments.callbacks.record_callback)."""

    __tablename__ = "provider_callbacks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    remote_addr: Mapped[str | None] = mapped_column(String(64), default=None)
    content_type: Mapped[str | None] = mapped_column(String(200), default=None)
    # The body as text, or its beginning: compare body_size with what is kept to tell which.
    body: Mapped[str] = mapped_column(Text)
    # SHA-256 (hex) and length in bytes of the whole body as received; none on rows kept before 0012.
    body_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    body_size: Mapped[int | None] = mapped_column(Integer, default=None)
    order_no: Mapped[str | None] = mapped_column(String(24), index=True, default=None)
    outcome: Mapped[str] = mapped_column(String(32), default="received")
    detail: Mapped[str | None] = mapped_column(String(255), default=None)


class SandboxPayment(Model):
    """The sandbox gateway's own book of what a tester did on its payment page.

    It plays the provider's database: the site never reads it to credit, only the sandbox
    adapter's order query does (as a real provider's query API would answer).
    """

    __tablename__ = "sandbox_payments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_no: Mapped[str] = mapped_column(String(24), unique=True)
    trade_no: Mapped[str] = mapped_column(String(64), unique=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))  # TRADE_SUCCESS | TRADE_CLOSED
    notify: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SandboxRefund(Model):
    """The sandbox gateway's book of refunds, by the merchant's request number (as a real
    provider keeps them): a request sent again finds its refund and returns nothing twice."""

    __tablename__ = "sandbox_refunds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    refund_no: Mapped[str] = mapped_column(String(64), unique=True)
    order_no: Mapped[str] = mapped_column(String(24), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


PROMO_KINDS = ("fixed_bonus", "percent_bonus", "discount")


class Promotion(Model):
    """A time-limited rule that changes what a recharge earns or costs. It is copied onto each
    order it applies to (``RechargeOrder.promo_snapshot``), so later edits change no promise."""

    __tablename__ = "promotions"
    __table_args__ = (
        CheckConstraint(_in("kind", PROMO_KINDS), name="kind"),
        CheckConstraint("threshold_fen >= 0", name="threshold_not_negative"),
        CheckConstraint("value_fen >= 0", name="value_not_negative"),
        CheckConstraint("percent_bp >= 0 AND percent_bp <= 10000", name="percent_range"),
        CheckConstraint("cap_fen IS NULL OR cap_fen > 0", name="cap_positive"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        # Whatever the caps are set to, a published promotion never gives the whole amount away
        # (a discount of 100 %) nor a fixed bonus above the smallest amount it applies to.
        # Drafts may hold anything (they give nothing), so rows from before these checks survive.
        CheckConstraint("NOT published OR kind <> 'discount' OR percent_bp < 10000", name="discount_below_100"),
        CheckConstraint(
            "NOT published OR kind <> 'fixed_bonus' OR value_fen <= threshold_fen", name="fixed_bonus_within_threshold"
        ),
        # Publication is asked for drafts only; a change waits only beside published terms.
        CheckConstraint("NOT (published AND publish_requested)", name="requested_only_when_draft"),
        CheckConstraint("pending_terms IS NULL OR published", name="changes_only_when_published"),
        Index("ix_promotions_window", "published", "starts_at", "ends_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title_zh: Mapped[str] = mapped_column(String(120))
    title_en: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(16))
    # The order amount (face value, fen) from which the promotion applies.
    threshold_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # fixed_bonus: the bonus in fen.
    value_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # percent_bonus / discount: basis points of the amount (1000 = 10 %), rounded down to the fen.
    percent_bp: Mapped[int] = mapped_column(Integer, default=0)
    cap_fen: Mapped[int | None] = mapped_column(BigInteger, default=None)
    starts_at: Mapped[datetime] = mapped_column()  # UTC; staff type them in the site's time zone
    ends_at: Mapped[datetime] = mapped_column()
    priority: Mapped[int] = mapped_column(Integer, default=0)  # highest wins; they never stack
    published: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Two people (billing.promos): a draft's editor asks for publication, an admin who is not the
    # last editor of the terms approves. NULL editor: the command line, or a row older than this.
    publish_requested: Mapped[bool] = mapped_column(default=False)
    edited_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), default=None)
    edited_by: Mapped[str | None] = mapped_column(String(64), default=None)
    # A change to a published promotion, waiting for approval beside the live terms (JSON).
    pending_terms: Mapped[str | None] = mapped_column(Text, default=None)
    pending_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), default=None)
    pending_by: Mapped[str | None] = mapped_column(String(64), default=None)
    pending_at: Mapped[datetime | None] = mapped_column(default=None)


class FaqEntry(Model):
    """One question and answer in one language; answers are Markdown, sanitised when rendered."""

    __tablename__ = "faq_entries"
    __table_args__ = (
        CheckConstraint(_in("locale", ("zh_Hans", "en")), name="locale"),
        Index("ix_faq_entries_listing", "locale", "published", "position"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    locale: Mapped[str] = mapped_column(String(10))
    category: Mapped[str] = mapped_column(String(80))
    question: Mapped[str] = mapped_column(String(300))
    answer_md: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer, default=0)
    published: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


STAFF_ROLES = ("editor", "cashier", "admin")


class StaffUser(Model):
    """A member of staff. ``session_version`` is bumped on logout (and may be on password
    change): every session cookie carrying an older version is refused."""

    __tablename__ = "staff_users"
    __table_args__ = (CheckConstraint(_in("role", STAFF_ROLES), name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(default=True)
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Second factor (RFC 6238). The secret must be readable to check a code, so it cannot be
    # hashed; ``totp_pending`` holds a secret shown for enrolment until a first code confirms
    # it, and ``totp_last_step`` refuses a code that was used once already (replay).
    totp_secret: Mapped[str | None] = mapped_column(String(64), default=None)
    totp_pending: Mapped[str | None] = mapped_column(String(64), default=None)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    totp_required: Mapped[bool] = mapped_column(default=False)


class AuditLog(Model):
    """Who did what, append-only (triggers made by the migration refuse UPDATE and DELETE).

    ``username`` is copied so a row stays readable whatever happens to the account, and so a
    failed login by an unknown name is recorded too (``staff_id`` is then empty)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_created", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), index=True, default=None)
    username: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str | None] = mapped_column(String(120), default=None)
    before_summary: Mapped[str | None] = mapped_column(Text, default=None)
    after_summary: Mapped[str | None] = mapped_column(Text, default=None)
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def serial_text(batch_id: int, serial: int) -> str:
    """A voucher's serial as printed and typed to find it (``0012-000034``); also the transaction
    id of the payment event its use made."""
    return f"{batch_id:04d}-{serial:06d}"


class VoucherBatch(Model):
    """Recharge vouchers (充值卡) made together: one face value, one expiry, one state. Its
    total (count times value) is money once it is active; activating a batch above
    ``HEYON_VOUCHER_TWO_ADMINS_ABOVE`` is asked for by one admin and approved by another."""

    __tablename__ = "voucher_batches"
    __table_args__ = (
        CheckConstraint(_in("state", VOUCHER_BATCH_STATES), name="state"),
        CheckConstraint("value_fen > 0", name="value_positive"),
        CheckConstraint("count BETWEEN 1 AND 100000", name="count_range"),
        # Two people: whoever asked for the activation is not who approved it.
        CheckConstraint(
            "activation_requested_by_id IS NULL OR activated_by_id IS NULL "
            "OR activated_by_id <> activation_requested_by_id",
            name="two_people",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value_fen: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer)
    # The last day (site time) a voucher of the batch can be used.
    expires_on: Mapped[date] = mapped_column(Date)
    note: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[str] = mapped_column(String(8), default="created")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Who did what, as the audit rows name them ("cli" for the command line); the ids are staff
    # accounts, for the two-people rule (NULL: the command line's operator).
    created_by: Mapped[str] = mapped_column(String(64))
    activation_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    activation_requested_by: Mapped[str | None] = mapped_column(String(64), default=None)
    activation_requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), default=None)
    activated_at: Mapped[datetime | None] = mapped_column(default=None)
    activated_by: Mapped[str | None] = mapped_column(String(64), default=None)
    activated_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), default=None)
    voided_at: Mapped[datetime | None] = mapped_column(default=None)

    @property
    def total_fen(self) -> int:
        return self.value_fen * self.count


class Voucher(Model):
    """One voucher: a serial printed on it (sequential in its batch, not secret) and a PIN under
    the scratch panel, kept only as a keyed digest. Used once: the conditional update that marks
    it used also names the order it credits, and both are unique."""

    __tablename__ = "vouchers"
    __table_args__ = (
        UniqueConstraint("batch_id", "serial", name="uq_vouchers_batch_serial"),
        CheckConstraint(_in("status", VOUCHER_STATES), name="status"),
        CheckConstraint("serial >= 1", name="serial_positive"),
        CheckConstraint("(status = 'used') = (order_id IS NOT NULL)", name="order_when_used"),
        CheckConstraint("(status = 'used') = (card_id IS NOT NULL)", name="card_when_used"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("voucher_batches.id"))
    serial: Mapped[int] = mapped_column(Integer)
    pin_digest: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(8), default="created")
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    card_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id"), default=None)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("recharge_orders.id"), unique=True, default=None)
    voided_at: Mapped[datetime | None] = mapped_column(default=None)


class InvoiceRequest(Model):
    """A customer's request for an invoice (发票) of one credited order: recorded here, issued on
    the tax platform by staff, whose PDF is kept with the request and delivered to the customer."""

    __tablename__ = "invoice_requests"
    __table_args__ = (
        CheckConstraint(_in("buyer_kind", INVOICE_BUYERS), name="buyer_kind"),
        CheckConstraint(_in("state", INVOICE_STATES), name="state"),
        CheckConstraint("(buyer_kind = 'company') = (tax_id IS NOT NULL)", name="tax_id_when_company"),
        CheckConstraint("(state = 'issued') = (pdf IS NOT NULL)", name="pdf_when_issued"),
        Index("ix_invoice_requests_state", "state", "requested_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("recharge_orders.id"), unique=True)  # one per order
    buyer_kind: Mapped[str] = mapped_column(String(10))
    buyer_name: Mapped[str] = mapped_column(String(200))
    tax_id: Mapped[str | None] = mapped_column(String(18), default=None)
    # Where the invoice goes: personal data, masked on staff pages, deleted by `flask cards forget`.
    email: Mapped[str] = mapped_column(String(254))
    state: Mapped[str] = mapped_column(String(10), default="requested")
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    decided_by: Mapped[str | None] = mapped_column(String(64), default=None)
    refusal_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    # The tax platform's PDF, in the database: every app server can hand it out, and a backup of
    # the database holds it (at most HEYON_INVOICE_MAX_BYTES).
    pdf: Mapped[bytes | None] = mapped_column(LargeBinary, default=None, deferred=True)
    pdf_size: Mapped[int | None] = mapped_column(Integer, default=None)
    pdf_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
