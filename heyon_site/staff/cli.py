"""flask staff ...: accounts for the back office."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from sqlalchemy import select, update

from ..database import in_write_transaction
from ..extensions import db
from ..models import STAFF_ROLES, StaffUser
from . import second_factor
from .auth import MIN_PASSWORD_LENGTH, audit, clear_throttle, create_staff, end_all_sessions, find_staff, hash_password

staff_cli = AppGroup("staff", help="Staff accounts of the back office.")


@staff_cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(STAFF_ROLES), required=True, help="editor, cashier or admin.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="Prompted (twice) when left out; pass it only from scripts.")
def staff_create(username: str, role: str, password: str) -> None:
    """Create a staff account."""
    username = username.strip()
    if not 1 <= len(username) <= 64:
        raise click.BadParameter("a username has 1 to 64 characters")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.BadParameter(f"a staff password has at least {MIN_PASSWORD_LENGTH} characters")
    if find_staff(username):
        raise click.ClickException(f"staff user {username} exists already")
    in_write_transaction(lambda: create_staff(username, password, role))
    click.echo(f"created staff user {username} ({role})")


CLI_ACTOR = "(command line)"  # the audit log's "who" for changes made on the server itself


def _existing(username: str) -> StaffUser:
    user = find_staff(username.strip())
    if user is None:
        raise click.ClickException(f"no staff user {username}")
    return user


@staff_cli.command("list")
def staff_list() -> None:
    """List staff accounts: name, role, whether they can sign in, second factor."""
    for user in db.session.scalars(select(StaffUser).order_by(StaffUser.username)):
        factor = "on" if user.totp_secret else "required, not set up" if user.totp_required else "off"
        click.echo(f"{user.username}\t{user.role}\t{'active' if user.active else 'disabled'}\tsecond factor {factor}")


@staff_cli.command("password")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="Prompted (twice) when left out; pass it only from scripts.")
def staff_password(username: str, password: str) -> None:
    """Set a new password (the way back in for a locked-out admin); ends the account's sessions."""
    user = _existing(username)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.BadParameter(f"a staff password has at least {MIN_PASSWORD_LENGTH} characters")
    staff_id, name, new_hash = user.id, user.username, hash_password(password)

    def work() -> int:
        db.session.execute(update(StaffUser).where(StaffUser.id == staff_id).values(password_hash=new_hash))
        cleared = clear_throttle(name)  # the way back in: no wait left from anyone's failures
        end_all_sessions(staff_id)
        audit("staff.password_reset", staff_id=None, username=CLI_ACTOR, target=f"staff {name}")
        return cleared

    cleared = in_write_transaction(work)
    click.echo(f"new password set for {name}; its sessions have ended")
    if cleared:
        click.echo(f"sign-in throttle cleared ({cleared} record(s))")


@staff_cli.command("reset-totp")
@click.argument("username")
def staff_reset_totp(username: str) -> None:
    """Remove the second factor (a lost phone); it is set up again at the next sign-in."""
    user = _existing(username)
    staff_id, name = user.id, user.username

    def work() -> None:
        second_factor.remove(staff_id)
        clear_throttle(name, password=False)  # the codes' throttle was about the removed secret
        end_all_sessions(staff_id)
        audit("staff.totp_reset", staff_id=None, username=CLI_ACTOR, target=f"staff {name}")

    in_write_transaction(work)
    click.echo(f"second factor removed for {name}; its sessions have ended")
