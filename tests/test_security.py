"""Security: SQL is parameterized and identifiers validated; nothing is unpickled without
the opt-in; no password reaches a log line, an exception or the CLIs' output; the
least-privilege roles of docs/SECURITY.md are enough to run, and no more.
"""

from __future__ import annotations

import ast
import base64
import json
import logging
import os
import pickle
import re
import subprocess
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from saga import JsonCodec, PickleCodec, Saga, Status
from saga.store import Store
from tests.apps import chain, create_log, ticking
from tests.helpers import Db, running, wait_until

ROOT = Path(__file__).parents[1]
SAGA_SOURCES = sorted((ROOT / "saga").rglob("*.py"))
SQL_FILES = sorted((ROOT / "sql").glob("*.sql"))
CLI_TIMEOUT = 60.0

# -- SQL: parameters and identifiers ------------------------------------------------------

# The shapes of SQL statements (not just their words, which messages use too).
SQL_WORDS = re.compile(
    r"\bSELECT\b.*\bFROM\b|\bINSERT\s+INTO\b|\bUPDATE\b.*\bSET\b|\bDELETE\s+FROM\b"
    r"|\b(CREATE|DROP|ALTER)\s+(TABLE|SCHEMA|INDEX|ROLE|FUNCTION|TYPE)\b|\bTRUNCATE\b"
    r"|\b(GRANT|REVOKE)\b.*\bON\b|^\s*(LISTEN|NOTIFY|UNLISTEN|SET)\s", re.DOTALL)


def string_formatted_sql(tree: ast.AST) -> list[tuple[int, str]]:
    """Where *tree* builds SQL text by string formatting: an f-string, `%` or `+` on a
    literal, or `"...".format()`, whose literal text holds an SQL keyword."""
    found = []
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values
                           if isinstance(v, ast.Constant) and isinstance(v.value, str))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
            sides = [node.left, node.right] if isinstance(node.op, ast.Add) else [node.left]
            if not all(isinstance(s, ast.Constant) for s in (node.left, node.right)):
                text = " ".join(s.value for s in sides
                                if isinstance(s, ast.Constant) and isinstance(s.value, str))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "format" and isinstance(node.func.value, ast.Constant)
              and isinstance(node.func.value.value, str)):
            text = node.func.value.value
        if text and SQL_WORDS.search(text):
            found.append((getattr(node, "lineno", 0), text.strip()[:60]))
    return sorted(found)


@pytest.mark.parametrize("path", SAGA_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_sql_is_built_by_string_formatting(path: Path) -> None:
    """Statements come from sql/*.sql (values as %(name)s parameters, the schema filled
    with sql.Identifier) or from psycopg.sql: never from Python string formatting."""
    assert string_formatted_sql(ast.parse(path.read_text(), str(path))) == []


def test_the_scanner_finds_string_formatted_sql() -> None:
    bad = ('t = "x"\n'
           'conn.execute(f"DELETE FROM {t} WHERE id = 1")\n'
           'conn.execute("SELECT * FROM %s" % t)\n'
           'conn.execute("UPDATE " + t + " SET a = 1")\n'
           'conn.execute("DROP TABLE {}".format(t))\n'
           'log.info(f"claimed {n} rows")\n'
           'conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(t)))\n')
    assert [line for line, _ in string_formatted_sql(ast.parse(bad))] == [2, 3, 4, 5]


@pytest.mark.parametrize("path", SQL_FILES, ids=lambda p: p.name)
def test_sql_files_take_values_only_as_parameters(path: Path) -> None:
    """The only substitution in the SQL files is {schema}, which is an identifier; every
    value is a named parameter, never inside a quoted literal."""
    text = "\n".join(line.split("--")[0] for line in path.read_text().splitlines())
    text = text.replace("{{", "").replace("}}", "")
    assert set(re.findall(r"\{[^}]*\}", text)) <= {"{schema}"}
    assert re.findall(r"%(?!\(\w+\)s|%)", text) == []  # only %(name)s (and %% in LIKE)
    for literal in re.findall(r"'[^']*'", text):
        assert "%(" not in literal, literal
        assert "{" not in literal, literal
    if re.fullmatch(r"\d{3}_.*\.sql", path.name):  # migrations run without parameters
        assert "%(" not in text


HOSTILE_SCHEMAS = ["x; drop table y", 'x"; DROP TABLE y; --', "x y", "X", "1x", "", "a" * 49,
                   "saga\x00", "ünïcode", "a-b", "a.b", "public; select pg_sleep(10)"]


@pytest.mark.parametrize("name", HOSTILE_SCHEMAS)
def test_hostile_schema_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="schema must be a lowercase identifier"):
        Saga("s", "postgresql://unused", schema=name)
    with pytest.raises(ValueError, match="schema must be a lowercase identifier"):
        Store(name)


def test_a_hostile_schema_name_on_the_command_line_changes_nothing(dsn: str, db: Db) -> None:
    db.execute("CREATE SCHEMA {s}")
    db.execute("CREATE TABLE {s}.y (id int)")
    hostile = f"x; drop table {db.schema}.y"
    for command in (["migrate"], ["stats"], ["list"]):
        result = run_cli("saga", *command, "--dsn", dsn, "--schema", hostile)
        assert result.returncode == 2, result.stderr
        assert "schema must be a lowercase identifier" in result.stderr
    assert db.one("SELECT to_regclass(%s) IS NOT NULL", f"{db.schema}.y")


# -- pickles ------------------------------------------------------------------------------


def test_only_the_pickle_codec_unpickles() -> None:
    """pickle.load(s)/Unpickler appear in one place: PickleCodec, the explicit opt-in."""
    users = []
    for path in SAGA_SOURCES:
        tree = ast.parse(path.read_text())
        for cls in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)] + [tree]:
            for node in ast.walk(cls):
                if isinstance(node, ast.Attribute) and node.attr in (
                        "loads", "load", "Unpickler") and getattr(node.value, "id", "") == "pickle":
                    users.append((path.name, getattr(cls, "name", "<module>")))
                if isinstance(node, ast.ImportFrom) and node.module == "pickle":
                    users.append((path.name, "from pickle import"))
    assert set(users) == {("codecs.py", "PickleCodec"), ("codecs.py", "<module>")}


class Touch:
    """A pickle that, when loaded, creates a file: what an attacker would put in a row."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.path,))


def planted(marker: Path) -> str:
    """A row payload that PickleCodec would unpickle, running `marker.touch()`."""
    return json.dumps({"pickle": base64.b64encode(pickle.dumps(Touch(marker))).decode()})


def test_a_planted_pickle_is_never_unpickled_by_the_default_codec(
    make_saga: Callable[..., Saga], db: Db, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    saga = make_saga("victim")
    seen: list[object] = []

    @saga.step
    def take(input: object) -> None:
        seen.append(input)

    for instance in ("a", "b"):
        db.execute("INSERT INTO {s}.instance (name, instance_id, step, input, state) "
                   "VALUES ('victim', %s, 'take', %s::jsonb, %s::jsonb)",
                   instance, planted(marker), planted(marker))
    assert isinstance(saga.get("a").input, dict)  # read as plain JSON
    saga.run(workers=2, drain=True)
    assert [saga.get(i).status for i in ("a", "b")] == [Status.COMPLETE] * 2
    assert seen == [json.loads(planted(marker))] * 2
    assert not marker.exists()
    assert isinstance(saga.codec, JsonCodec)


def test_the_pickle_codec_runs_what_the_table_holds(dsn: str, schema: str, db: Db,
                                                    tmp_path: Path) -> None:
    """The documented risk of the opt-in: whoever writes the table runs code."""
    marker = tmp_path / "pwned"
    with Saga("trusting", dsn, schema=schema, codec=PickleCodec()) as saga:
        saga.init_db()

        @saga.step
        def take(input: object) -> None: ...

        db.execute("INSERT INTO {s}.instance (name, instance_id, step, input) "
                   "VALUES ('trusting', 'a', 'take', %s::jsonb)", planted(marker))
        saga.run(workers=1, drain=True)
    assert marker.exists()


# -- passwords ----------------------------------------------------------------------------

SECRET = f"Sw0rdfish-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def secret_dsn(dsn: str, schema: str) -> Iterator[str]:
    """A DSN with a password: of a role that has one, and may create the test's schema."""
    role = f"pw_{schema}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(SECRET)))
        dbname = admin.execute("SELECT current_database()").fetchone()
        assert dbname is not None
        admin.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(dbname[0]), sql.Identifier(role)))
        try:
            yield make_conninfo(dsn, user=role, password=SECRET)
        finally:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def run_cli(module: str, *args: str, schema: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m module args` to its end and capture its output."""
    environ = {k: v for k, v in os.environ.items() if k != "SAGA_DSN"}
    if schema is not None:
        environ["SAGA_TEST_SCHEMA"] = schema
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                          env={**environ, **(env or {})}, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT, check=False)


def test_no_cli_prints_the_password(secret_dsn: str, schema: str) -> None:
    """The worker (at DEBUG, with a step that fails) and the admin commands, given the
    DSN by --dsn or SAGA_DSN: nothing they print holds the password."""
    outputs = [run_cli("saga", "migrate", "--dsn", secret_dsn, "--schema", schema)]
    with chain.build(schema, secret_dsn) as saga, psycopg.connect(secret_dsn) as conn:
        create_log(conn, schema)
        conn.commit()
        saga.start("ok", "first", {"id": "ok"})
        saga.start("bad", "broken", {"id": "bad"})
    outputs.append(run_cli("saga.worker", "tests.apps.chain:saga", "--drain", "--log-level",
                           "DEBUG", "--dsn", secret_dsn, schema=schema))
    outputs.append(run_cli("saga.worker", "tests.apps.chain:saga", "--drain", "--log-level",
                           "DEBUG", schema=schema, env={"SAGA_DSN": secret_dsn}))
    for command in (["stats"], ["list"], ["show", "bad"]):
        outputs.append(run_cli("saga", *command, "--dsn", secret_dsn, "--schema", schema))
        outputs.append(run_cli("saga", *command, "--json", "--schema", schema,
                               env={"SAGA_DSN": secret_dsn}))
    outputs.append(run_cli("saga", "cancel", "--saga", "chain", "bad", "--dsn", secret_dsn,
                           "--schema", schema))
    assert [r.returncode for r in outputs] == [0] * len(outputs), [r.stderr for r in outputs]
    assert "drained:" in outputs[1].stdout  # the worker did run, and logged at DEBUG
    assert "RuntimeError: broken step" in outputs[1].stderr  # the failing step was logged
    for result in outputs:
        assert SECRET not in result.stdout + result.stderr, result.args


@pytest.mark.parametrize("bad", [
    f"postgresql://u:{SECRET}@127.0.0.1:1/x",  # nothing listens
    f"postgresql://u:{SECRET}@[::1/x",  # libpq cannot parse it
    f"host=127.0.0.1 port=1 password={SECRET} bogus=1",  # an unknown parameter
], ids=["unreachable", "malformed-uri", "unknown-parameter"])
def test_a_failing_dsn_is_reported_without_its_password(bad: str, schema: str) -> None:
    for result in (run_cli("saga.worker", "tests.apps.chain:saga", "--dsn", bad, schema=schema),
                   run_cli("saga", "stats", "--dsn", bad),
                   run_cli("saga", "migrate", "--dsn", bad)):
        assert result.returncode == 1, result.stderr
        assert "error" in result.stderr
        assert SECRET not in result.stdout + result.stderr, result.args


def test_a_malformed_dsn_is_rejected_without_echoing_its_password(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ValueError, match="not a valid connection string") as given:
        Saga("x", f"postgresql://u:{SECRET}@[::1/x")
    monkeypatch.setenv("SAGA_DSN", f"postgresql://u:{SECRET}@[::1/x")
    saga = Saga("x")

    @saga.step
    def only(input: object) -> None: ...

    with pytest.raises(ValueError, match="not a valid connection string") as from_env:
        saga.start("i", only, 1)
    for error in (given.value, from_env.value):
        assert SECRET not in "".join(traceback.format_exception(error))
    assert SECRET not in caplog.text


def test_logs_and_records_hold_no_password_through_failures_and_cuts(
    secret_dsn: str, schema: str, db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    """In-process, at DEBUG: steps that fail, connections cut under the runner (which
    logs its reconnections): no log line, traceback or row holds the password."""
    caplog.set_level(logging.DEBUG)
    named = make_conninfo(secret_dsn, application_name=f"pw_{schema}")
    with Saga("pw", named, schema=schema, max_attempts=2, backoff_base=0.05,
              backoff_max=0.1) as saga:
        saga.init_db()

        @saga.step
        def work(input: int) -> object:
            if input % 3 == 0:
                raise RuntimeError(f"step failed for {input}")
            return None

        with running(saga, db, workers=2, heartbeat_timeout=2.0, poll_interval=0.2):
            for i in range(30):
                saga.start(f"i{i}", work, i)
            db.rows("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s", f"pw_{schema}")
            wait_until(lambda: db.one("SELECT count(*) FROM {s}.instance "
                                      "WHERE status IN (2, 3)") == 30, timeout=30)
        assert repr(saga).count(SECRET) == 0
    assert "step failed for 0" in caplog.text
    assert SECRET not in caplog.text
    rows = db.rows("SELECT row_to_json(i)::text FROM {s}.instance AS i UNION ALL "
                   "SELECT row_to_json(r)::text FROM {s}.runner AS r")
    assert rows
    assert all(SECRET not in text for (text,) in rows)


# -- least privilege ----------------------------------------------------------------------

# What docs/SECURITY.md grants the runtime role: no DDL, no DELETE of instances.
RUNTIME_GRANTS = (
    "GRANT USAGE ON SCHEMA {s} TO {r}",
    "GRANT SELECT, INSERT, UPDATE ON {s}.instance TO {r}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON {s}.runner TO {r}",
    "GRANT SELECT, INSERT, UPDATE ON {s}.schedule TO {r}",
    "GRANT SELECT, INSERT, DELETE ON {s}.limit_start TO {r}",
    "GRANT SELECT ON {s}.migration TO {r}",
    "GRANT USAGE ON SEQUENCE {s}.instance_id_seq TO {r}",
)


@pytest.fixture
def roles(dsn: str, schema: str) -> Iterator[tuple[str, str]]:
    """(owner DSN, runtime DSN): a migration role that owns the schema (it may create
    schemas in the database, nothing more), and a runtime role granted RUNTIME_GRANTS
    by the owner after it migrated."""
    owner, runtime = f"own_{schema}", f"run_{schema}"
    o, r = sql.Identifier(owner), sql.Identifier(runtime)
    with psycopg.connect(dsn, autocommit=True) as admin:
        dbname = admin.execute("SELECT current_database()").fetchone()
        assert dbname is not None
        for role in (o, r):
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
        admin.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(dbname[0]), o))
        owner_dsn = make_conninfo(dsn, user=owner)
        try:
            with Saga("owner", owner_dsn, schema=schema) as saga:
                assert saga.init_db()
            with psycopg.connect(owner_dsn, autocommit=True) as conn:
                for grant in RUNTIME_GRANTS:
                    conn.execute(sql.SQL(grant).format(s=sql.Identifier(schema), r=r))
            yield owner_dsn, make_conninfo(dsn, user=runtime)
        finally:
            for role in (r, o):
                admin.execute(sql.SQL("DROP OWNED BY {}").format(role))
                admin.execute(sql.SQL("DROP ROLE {}").format(role))


def test_the_runtime_role_runs_the_api_the_worker_and_the_reaper(
    roles: tuple[str, str], schema: str, db: Db
) -> None:
    owner_dsn, runtime_dsn = roles
    with psycopg.connect(owner_dsn, autocommit=True) as owner:
        create_log(owner, schema)  # the steps' log: the app's table, owned by the owner
        owner.execute(sql.SQL("GRANT INSERT ON {}.executed TO {}").format(
            sql.Identifier(schema), sql.Identifier(f"run_{schema}")))
    drain = ("saga.worker", "tests.apps.chain:saga", "--drain", "--dsn", runtime_dsn)
    with chain.build(schema, runtime_dsn) as saga:
        assert saga.init_db() == []
        saga.start("a", "first", {"id": "a"})
        saga.start_many("first", [(f"m{i}", {"id": f"m{i}"}) for i in range(3)])
        saga.start("w", "later", {"id": "w"})
        saga.start("gone", "first", {"id": "gone"}, delay=3600)
        saga.cancel("gone")
        # A dead runner's RUNNING row: the drain reaps it (DELETE on runner) and runs it.
        db.execute("INSERT INTO {s}.runner (id, hostname, pid, serves, expires_at) VALUES "
                   "('dead', 'x', 1, '{{}}', now() - interval '1 hour')")
        saga.start("orphan", "first", {"id": "orphan"})
        db.execute("UPDATE {s}.instance SET status = 1, runner_id = 'dead', attempts = 1 "
                   "WHERE instance_id = 'orphan'")
        first = run_cli(*drain, schema=schema)
        saga.call("w", "third", {"id": "w"})
        second = run_cli(*drain, schema=schema)
        waited = saga.wait("w", timeout=10).status
        statuses = {i: saga.get(i).status for i in ("a", "m0", "m2", "orphan", "gone")}
    admin = [run_cli("saga", command, "--dsn", runtime_dsn, "--schema", schema)
             for command in ("stats", "list")]
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert [r.returncode for r in admin] == [0, 0], [r.stderr for r in admin]
    assert waited is Status.COMPLETE
    assert statuses == {"a": Status.COMPLETE, "m0": Status.COMPLETE, "m2": Status.COMPLETE,
                        "orphan": Status.COMPLETE, "gone": Status.CANCELLED}
    assert db.runner_ids() == set()


def test_the_runtime_role_ticks_pauses_and_resumes_schedules(
    roles: tuple[str, str], schema: str, db: Db
) -> None:
    _, runtime_dsn = roles
    with ticking.build(schema, runtime_dsn) as saga:
        saga.run(workers=1, drain=True)  # records the schedule
        db.execute("UPDATE {s}.schedule SET next_tick = next_tick - interval '1 second'")
        assert saga.run(workers=1, drain=True).completed >= 1  # ticked, then ran
        saga.pause_schedule("beat")
        saga.resume_schedule("beat")
    listed = run_cli("saga", "schedules", "--dsn", runtime_dsn, "--schema", schema)
    assert listed.returncode == 0, listed.stderr


@pytest.mark.parametrize("statement", [
    "CREATE TABLE {s}.intruder (id int)",
    "DROP TABLE {s}.instance",
    "ALTER TABLE {s}.instance ADD COLUMN x int",
    "TRUNCATE {s}.instance",
    "DELETE FROM {s}.instance",
    "INSERT INTO {s}.migration VALUES (999, 'x')",
    "CREATE SCHEMA intruder",
], ids=["create", "drop", "alter", "truncate", "delete", "fake-migration", "schema"])
def test_the_runtime_role_can_do_nothing_else(roles: tuple[str, str], schema: str,
                                              statement: str) -> None:
    _, runtime_dsn = roles
    with psycopg.connect(runtime_dsn) as conn, \
            pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(sql.SQL(statement).format(s=sql.Identifier(schema)))


def test_a_role_that_owns_the_schema_can_migrate_it_without_create_on_the_database(
    dsn: str, schema: str
) -> None:
    """The tighter setup of docs/SECURITY.md: the DBA creates the schema for the migration
    role, which gets no CREATE on the database at all."""
    owner = sql.Identifier(f"own_{schema}")
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(owner))
        try:
            admin.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
                sql.Identifier(schema), owner))
            with Saga("owner", make_conninfo(dsn, user=f"own_{schema}"), schema=schema) as saga:
                assert saga.init_db()
                assert saga.init_db() == []
        finally:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(owner))
            admin.execute(sql.SQL("DROP ROLE {}").format(owner))
