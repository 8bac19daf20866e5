"""flask staff ...: accounts for the back office."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from ..database import in_write_transaction
from ..models import STAFF_ROLES
from .auth import MIN_PASSWORD_LENGTH, create_staff, find_staff

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
