"""A Django project with the dashboard mounted, checked through Django's test client.

Run as `python -m tests.apps.django_web DSN SCHEMA` (Django can be set up once per
process, so tests/test_web_mounts.py runs it in a subprocess). The saga tables must be
in SCHEMA already; Django's own tables go there too. Exit 0 when every check passed.
"""

from __future__ import annotations

import re
import sys
from urllib.parse import urlencode

import django
from django.conf import settings
from django.urls import include, path
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import saga.web.django

urlpatterns: list[object] = []


def configure(dsn: str, schema: str) -> None:
    params = conninfo_to_dict(make_conninfo(dsn, options=f"-c search_path={schema}"))
    settings.configure(
        SECRET_KEY="test", ALLOWED_HOSTS=["testserver"], ROOT_URLCONF=__name__, DEBUG=False,
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes",
                        "django.contrib.sessions"],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware",
                    "django.middleware.csrf.CsrfViewMiddleware",
                    "django.contrib.auth.middleware.AuthenticationMiddleware"],
        DATABASES={"default": {
            "ENGINE": "django.db.backends.postgresql", "NAME": params.pop("dbname"),
            "USER": params.pop("user", ""), "PASSWORD": params.pop("password", ""),
            "HOST": params.pop("host", ""), "PORT": params.pop("port", ""),
            "OPTIONS": params}},
        USE_TZ=True, LOGIN_URL="/login/", DEFAULT_AUTO_FIELD="django.db.models.AutoField")
    # The dashboard's DSN is Django's database (database_dsn), with the same search_path.
    django.setup()
    # No schema=: the dashboard's is SAGA_SCHEMA's (the test sets it to SCHEMA).
    urlpatterns.append(path("ops/saga/", include(saga.web.django.urls())))


def main(dsn: str, schema: str) -> int:
    configure(dsn, schema)
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    call_command("migrate", verbosity=0)
    staff = User.objects.create_user("ops", password="x", is_staff=True)
    plain = User.objects.create_user("visitor", password="x")
    with connection.cursor() as cur:
        cur.execute(f'SELECT id FROM "{schema}".instance WHERE status = 3')
        (row_id,) = cur.fetchone()

    anonymous = Client()
    reply = anonymous.get("/ops/saga/")
    assert reply.status_code == 302, reply
    assert reply["Location"].startswith("/login/?next="), reply

    visitor = Client()
    visitor.force_login(plain)
    assert visitor.get("/ops/saga/").status_code == 403

    client = Client()
    client.force_login(staff)
    page = client.get("/ops/saga/")
    assert page.status_code == 200, page.content
    text = page.content.decode()
    assert 'href="/ops/saga/instances"' in text, text
    assert "full · ops" in text, text
    assert "default-src 'none'" in page["Content-Security-Policy"]
    detail = client.get(f"/ops/saga/instances/{row_id}").content.decode()
    token = re.search(r'name="csrf" value="([^"]+)"', detail)
    assert token, detail
    # Without the dashboard's token: refused, whatever Django's CSRF middleware thinks.
    form = "application/x-www-form-urlencoded"
    assert client.post(f"/ops/saga/instances/{row_id}/retry", "",
                       content_type=form).status_code == 403
    assert client.post(f"/ops/saga/instances/{row_id}/retry").status_code == 415  # multipart
    reply = client.post(f"/ops/saga/instances/{row_id}/retry", urlencode({"csrf": token[1]}),
                        content_type=form)
    assert reply.status_code == 303, reply.content
    assert reply["Location"] == f"/ops/saga/instances/{row_id}?done=retry"
    with connection.cursor() as cur:
        cur.execute(f'SELECT status FROM "{schema}".instance WHERE id = %s', [row_id])
        assert cur.fetchone() == (0,)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
