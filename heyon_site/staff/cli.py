"""flask staff ...: accounts for the back office."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from heyon_site.database import in_write_transaction
from heyon_site.extensions import db
from heyon_site.models import STAFF_ROLES, StaffUser
from heyon_site.ops.audit import COMMAND_LINE
from heyon_site.staff import services
from heyon_site.staff.auth import MIN_PASSWORD_LENGTH, find_staff, hash_password

staff_cli = AppGroup("staff", help="Staff accounts of the back office.")
# A new password, asked twice without echo; on the command line only from scripts.
password_option = click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Prompted (twice) when left out; pass it only from scripts.",
)


@staff_cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(STAFF_ROLES), required=True, help="editor, cashier or admin.")
@password_option
def staff_create(username: str, role: str, password: str) -> None:
    """Create a staff account."""
    username = username.strip()
    if not 1 <= len(username) <= 64:
        raise click.BadParameter("a username has 1 to 64 characters")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.BadParameter(f"a staff password has at least {MIN_PASSWORD_LENGTH} characters")
    if find_staff(username):
        raise click.ClickException(f"staff user {username} exists already")
    password_hash = hash_password(password)
    in_write_transaction(
        lambda: services.create_account(COMMAND_LINE, username, password_hash, services.Settings(role))
    )
    click.echo(f"created staff user {username} ({role})")


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
@password_option
def staff_password(username: str, password: str) -> None:
    """Set a new password (the way back in for a locked-out admin); ends the account's sessions."""
    user = _existing(username)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.BadParameter(f"a staff password has at least {MIN_PASSWORD_LENGTH} characters")
    new_hash = hash_password(password)
    cleared = in_write_transaction(lambda: services.set_password(COMMAND_LINE, user, new_hash))
    click.echo(f"new password set for {user.username}; its sessions have ended")
    if cleared:
        click.echo(f"sign-in throttle cleared ({cleared} record(s))")


@staff_cli.command("reset-totp")
@click.argument("username")
def staff_reset_totp(username: str) -> None:
    """Remove the second factor (a lost phone); it is set up again at the next sign-in."""
    user = _existing(username)
    in_write_transaction(lambda: services.reset_second_factor(COMMAND_LINE, user))
    click.echo(f"second factor removed for {user.username}; its sessions have ended")
