"""The shipped analyst-role SQL (config/analyst_role.sql) is valid ClickHouse: every statement, with its
placeholders filled, goes through ClickHouse's own parser (``formatQuery`` in chDB; chDB has no users, so
the statements cannot be run here). And it grants nothing on the proxy's private tables or pseudonyms."""

from __future__ import annotations

import re

from clickhouse_connect.driver.client import Client

from config.schema import PSEUDONYM_COLUMNS

ROLE_SQL = __import__("pathlib").Path(__file__).resolve().parents[2] / "config" / "analyst_role.sql"


def statements() -> list[str]:
    text = "\n".join(ln for ln in ROLE_SQL.read_text().splitlines() if not ln.lstrip().startswith("--"))
    text = text.format(database="beacon", site="shop", password="s3cret-analyst")
    return [s.strip() for s in text.split(";") if s.strip()]


def test_every_statement_parses(ch: Client) -> None:
    stmts = statements()
    assert len(stmts) >= 8
    for stmt in stmts:
        formatted = ch.query("SELECT formatQuery({q:String})", parameters={"q": stmt}).result_rows[0][0]
        assert formatted, stmt


def test_it_grants_only_anonymised_columns_of_the_sites_rows() -> None:
    text = " ".join(statements())
    grant = re.search(r"GRANT SELECT\((.*?)\)\s+ON beacon\.events ", text, re.S)
    assert grant is not None
    columns = {c.strip() for c in grant.group(1).split(",")}
    assert not columns & {*PSEUDONYM_COLUMNS, "ip", "latitude", "longitude"}
    for private in ("audit_log", "suppressions", "analyst_keys", "analyst_requests", "dashboard_sessions"):
        assert private not in text
    assert "USING site = 'shop'" in text and "readonly = 1" in text and "CHANGEABLE_IN_READONLY" in text


def test_the_parser_check_can_fail(ch: Client) -> None:
    import pytest
    from clickhouse_connect.driver.exceptions import ClickHouseError

    with pytest.raises(ClickHouseError):
        ch.query("SELECT formatQuery({q:String})", parameters={"q": "CREATE ROW POLICY ON FOR SELECT"})
