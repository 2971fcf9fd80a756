"""``manage.py atw_token``: create, revoke and list bearer tokens for the HTTP API."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...tokens import create_token, list_tokens, revoke_token


class Command(BaseCommand):
    help = "Create, revoke or list bearer tokens for django-atw's HTTP API."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{create,revoke,list}")
        create = actions.add_parser("create", help="Make a token for a user and print it (shown once).")
        create.add_argument("username")
        create.add_argument("--name", default="", help="What the token is for, shown by 'list'.")
        revoke = actions.add_parser("revoke", help="Revoke a token by its id or its shown prefix.")
        revoke.add_argument("token", help="The id or prefix (e.g. atw_AbCdEfGh) that 'list' shows.")
        listing = actions.add_parser("list", help="List tokens (never their secret).")
        listing.add_argument("--user", dest="username", default=None, help="Only this user's tokens.")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "create":
            try:
                token, row = create_token(options["username"], options["name"])
            except LookupError as exc:
                raise CommandError(f"{exc} Create the user first, or check the spelling.") from None
            self.stdout.write(token)
            self.stderr.write(
                f"Token {row.prefix} (id {row.id}) created for {options['username']}. "
                "It is shown only now: store it safely."
            )
        elif action == "revoke":
            if revoke_token(options["token"]) == 0:
                raise CommandError(
                    f"No unrevoked token has the id or prefix {options['token']!r}; see 'atw_token list'."
                )
            self.stdout.write(self.style.SUCCESS(f"Revoked {options['token']}."))
        else:
            for summary in list_tokens(options["username"]):
                state = "revoked" if summary.revoked_at else "active"
                used = summary.last_used_at.isoformat(timespec="seconds") if summary.last_used_at else "never"
                self.stdout.write(
                    f"{summary.id}\t{summary.prefix}\t{summary.username}\t{state}\t"
                    f"created {summary.created_at.isoformat(timespec='seconds')}\tused {used}\t{summary.name}"
                )
