"""Bearer tokens: the atw_token command, storage as a digest, and the admin's view of them."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from django_atw.models import ApiToken
from django_atw.tokens import digest, user_for_token

pytestmark = pytest.mark.django_db(transaction=True)


def _create(username: str, *extra: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("atw_token", "create", username, *extra, stdout=out, stderr=err)
    assert "shown only now" in err.getvalue()
    return out.getvalue().strip()


def test_create_prints_a_token_that_is_stored_only_as_its_digest(django_user_model):
    user = django_user_model.objects.create_user("script")
    token = _create("script", "--name", "nightly export")
    row = ApiToken.objects.get()
    assert token.startswith("atw_") and len(token) > 40
    assert row.digest == digest(token) and token not in (row.digest, row.prefix)
    assert token.startswith(row.prefix) and len(row.prefix) == 12
    assert (row.user, row.name) == (user, "nightly export")
    assert user_for_token(token) == user


def test_create_for_an_unknown_user_names_it():
    with pytest.raises(CommandError, match="No user with username 'ghost'"):
        call_command("atw_token", "create", "ghost")
    assert not ApiToken.objects.exists()


def test_revoke_by_prefix_or_id_stops_the_token_and_keeps_the_row(django_user_model):
    django_user_model.objects.create_user("script")
    first, second = _create("script"), _create("script")
    rows = {row.digest: row for row in ApiToken.objects.all()}
    call_command("atw_token", "revoke", rows[digest(first)].prefix, stdout=io.StringIO())
    call_command("atw_token", "revoke", str(rows[digest(second)].id), stdout=io.StringIO())
    assert user_for_token(first) is None and user_for_token(second) is None
    assert ApiToken.objects.filter(revoked_at__isnull=False).count() == 2
    with pytest.raises(CommandError, match="No unrevoked token"):
        call_command("atw_token", "revoke", rows[digest(first)].prefix)


def test_list_shows_prefix_user_and_state_but_never_the_secret(django_user_model):
    django_user_model.objects.create_user("script")
    django_user_model.objects.create_user("other")
    token = _create("script", "--name", "ci")
    _create("other")
    call_command("atw_token", "revoke", token[:12], stdout=io.StringIO())
    out = io.StringIO()
    call_command("atw_token", "list", "--user", "script", stdout=out)
    (line,) = out.getvalue().splitlines()
    assert token[:12] in line and "script" in line and "revoked" in line and "ci" in line
    assert token not in out.getvalue() and digest(token) not in out.getvalue()


def test_a_token_of_an_inactive_user_authenticates_nobody(django_user_model):
    django_user_model.objects.create_user("script", is_active=False)
    assert user_for_token(_create("script")) is None


def test_the_admin_lists_tokens_by_prefix_without_the_digest(admin_client, django_user_model):
    django_user_model.objects.create_user("script")
    token = _create("script")
    row = ApiToken.objects.get()
    listing = admin_client.get("/admin/django_atw/apitoken/").content.decode()
    detail = admin_client.get(f"/admin/django_atw/apitoken/{row.pk}/change/").content.decode()
    assert row.prefix in listing and row.prefix in detail
    for page in (listing, detail):
        assert row.digest not in page and token not in page


def test_the_admin_revoke_action_revokes(admin_client, django_user_model):
    django_user_model.objects.create_user("script")
    token = _create("script")
    row = ApiToken.objects.get()
    admin_client.post("/admin/django_atw/apitoken/", {"action": "revoke", "_selected_action": [str(row.pk)]})
    assert user_for_token(token) is None
