"""Admin SQL, confined to reads of this proxy's own tables.

``POST /admin/query`` and ``beaconproxy query`` (both paths) hand the admin's SQL to :func:`confine` before
anything runs. ClickHouse parses it without running it: ``formatQuerySingleLine`` gives the one statement
that will run (comments dropped; a second statement is a syntax error) and ``parseQueryToJSON`` gives that
text's syntax tree, every clause under its own name. The tree is walked against allowlists, failing closed
on anything this module does not know:

* the statement is a SELECT (WITH, UNION, INTERSECT, EXCEPT, subqueries and JOINs included): no INSERT,
  DDL, SYSTEM, KILL or SET; no INTO OUTFILE, FORMAT or SETTINGS clause (the proxy picks both);
* every table read is one of this proxy's tables (``READABLE``: ``config.schema.TABLES`` but the salts and
  secret fingerprints) in its database (unqualified
  names resolve to it) or a WITH name in scope; ``x IN t`` reads t too;
* no table function at all: ``file``, ``url``, ``remote``, ``s3``, ``mysql``, ``executable``, ... and
  also the harmless ``numbers`` or ``values``, so the rule stays "only our tables";
* every function called is a ClickHouse built-in that only computes on its arguments
  (:class:`FunctionCatalog`): functions that read files (``file``), call out over the network (the
  ``ai*`` functions), describe the server (``hostName``, ``getSetting``, ...), read dictionaries or other
  tables (``dictGet``, ``joinGet``) and user-defined functions are refused.

What runs is ``SELECT * FROM (<the checked statement>)`` in ClickHouse's own formatting, itself parsed and
checked again, on its own connection whose settings (:func:`session_settings`) add ``readonly=1`` and the
admin limits. Refusals name the construct, never a stored value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from config.schema import PRIVATE_TABLES, TABLES
from config.settings import AdminQuerySettings
from sinks.base import SinkError

# The proxy's tables admin SQL may read: all but the shared secrets' state (the day's wrapped salt, the
# secrets' fingerprints), which nobody needs to read and which must stay out of any export.
READABLE = tuple(t for t in TABLES if t not in PRIVATE_TABLES)


class AdminSQLError(SinkError):
    """Admin SQL that may not run, or that ClickHouse refused; the message is for the admin who wrote it."""


def session_settings(limits: AdminQuerySettings) -> dict[str, Any]:
    """ClickHouse settings of the admin-query connection, applied in this order."""
    return {
        "max_execution_time": limits.max_seconds,
        "timeout_overflow_mode": "throw",
        "max_memory_usage": limits.max_memory_bytes,
        "max_result_rows": limits.max_result_rows,
        "max_result_bytes": limits.max_result_bytes,
        "result_overflow_mode": "throw",
        "dialect": "clickhouse",  # the grammar parseQueryToJSON used
        # 64-bit integers as JSON numbers and URLs without escaped slashes, whatever the server's defaults
        "output_format_json_quote_64bit_integers": 0,
        "output_format_json_escape_forward_slashes": 0,
        # Last: from here on the connection writes nothing and changes no setting (a SETTINGS clause that
        # got past the check would fail here too); on the embedded engine it also refuses table functions.
        "readonly": 1,
    }


# --- functions ----------------------------------------------------------------------------------------

# Categories (system.functions.categories) of functions that compute only on their arguments.
SAFE_CATEGORIES = frozenset(
    {
        "Aggregate Functions",
        "Arithmetic",
        "Arrays",
        "Bit",
        "Bitmap",
        "Comparison",
        "Conditional",
        "Dates and Times",
        "Distance",
        "Encoding",
        "Encryption",
        "Financial",
        "Geo",
        "Geo Polygon",
        "Hash",
        "IP Address",
        "JSON",
        "Logical",
        "Map",
        "Mathematical",
        "Null",
        "NumericIndexedVector",
        "QBit",
        "Random Number",
        "Rounding",
        "String",
        "String Replacement",
        "String Search",
        "String Splitting",
        "Time Window",
        "Tuple",
        "Type Conversion",
        "URL",
        "UUID",
    }
)
# From the mixed "Other" and "Internal" categories, the ones that only compute on their arguments.
# (The rest of "Other" includes file, getSetting, hostName, joinGet, hasColumnInTable, sleep, ...)
ALLOWED_UTILITIES = frozenset(
    {
        "bar",
        "blockSize",
        "byteSize",
        "caseWithExpression",  # CASE x WHEN ...
        "countDigits",
        "currentDatabase",
        "defaultValueOfArgumentType",
        "defaultValueOfTypeName",
        "errorCodeToName",
        "finalizeAggregation",
        "formatReadableDecimalSize",
        "formatReadableQuantity",
        "formatReadableSize",
        "formatReadableTimeDelta",
        "getSizeOfEnumType",
        "identity",
        "ignore",
        "initializeAggregation",
        "isConstant",
        "isDecimalOverflow",
        "MACNumToString",
        "MACStringToNum",
        "MACStringToOUI",
        "materialize",
        "minSampleSizeContinuous",
        "minSampleSizeConversion",
        "neighbor",
        "parseReadableSize",
        "parseReadableSizeOrNull",
        "parseReadableSizeOrZero",
        "parseTimeDelta",
        "rowNumberInAllBlocks",
        "rowNumberInBlock",
        "runningAccumulate",
        "runningDifference",
        "runningDifferenceStartingWithFirstValue",
        "throwIf",
        "toColumnTypeName",
        "toTypeName",
        "transform",
        "variantElement",
        "variantType",
        "visibleWidth",
    }
)
# Names the parser produces that system.functions does not list.
SYNTAX_FUNCTIONS = frozenset({"lambda", "exists", "grouping"})
# Whose second argument, when it is a bare name (``x IN t``), is a table.
IN_FUNCTIONS = frozenset(
    base + variant
    for base in (
        "in",
        "notIn",
        "globalIn",
        "globalNotIn",
        "nullIn",
        "notNullIn",
        "globalNullIn",
        "globalNotNullIn",
    )
    for variant in ("", "IgnoreSet")
)
# fmt: off
_DESCRIBE_THE_SERVER = (
    "hostName", "FQDN", "getSetting", "getSettingOrDefault", "getServerSetting", "getMergeTreeSetting",
    "getMacro", "getOSKernelVersion", "getServerPort", "tcpPort", "filesystemAvailable",
    "filesystemCapacity", "filesystemUnreserved", "serverUUID", "uptime", "buildId", "displayName",
    "currentUser", "authenticatedUser", "currentRoles", "enabledRoles", "defaultRoles", "currentProfiles",
    "enabledProfiles", "defaultProfiles", "getClientHTTPHeader", "showCertificate", "globalVariable",
    "queryID", "initialQueryID", "currentQueryID", "connectionId", "zookeeperSessionUptime",
)
# fmt: on
# Why some functions and categories are refused (any other: "only functions that compute on their
# arguments are allowed").
_WHY = {
    "file": "it reads files on the server",
    **dict.fromkeys(("joinGet", "joinGetOrNull", "hasColumnInTable"), "it reads another table by name"),
    **dict.fromkeys(
        _DESCRIBE_THE_SERVER, "it describes the server (its host, disks, settings, users or session)"
    ),
    **dict.fromkeys(("sleep", "sleepEachRow"), "it only makes the server wait"),
    "generateSerialID": "it writes a counter to Keeper",
    "Dictionary": "dictionaries load from files, URLs, programs or other databases",
    "Embedded Dictionary": "it reads the server's region dictionaries",
    "AI": "it calls an AI provider over the network",
    "Introspection": "it inspects the server process",
    "Machine Learning": "it loads models from the server",
}


class _Function(NamedTuple):
    name: str
    alias_to: str
    is_aggregate: bool
    categories: tuple[str, ...]


@dataclass(frozen=True)
class FunctionCatalog:
    """The engine's built-in functions (``system.functions``, origin System) and aggregate combinators."""

    functions: Mapping[str, _Function]
    case_insensitive: Mapping[str, _Function]  # lower-cased name -> function
    combinators: tuple[str, ...]  # longest first

    @classmethod
    def from_rows(
        cls, rows: Iterable[tuple[str, str, bool, bool, str]], combinators: Iterable[str]
    ) -> FunctionCatalog:
        functions: dict[str, _Function] = {}
        insensitive: dict[str, _Function] = {}
        for name, alias_to, is_aggregate, case_insensitive, categories in rows:
            cats = tuple(c.strip() for c in categories.split(",") if c.strip())
            fn = _Function(name, alias_to, bool(is_aggregate), cats)
            functions[name] = fn
            if case_insensitive:
                insensitive[name.lower()] = fn
        return cls(functions, insensitive, tuple(sorted(combinators, key=len, reverse=True)))

    @classmethod
    def load(cls, client: Client) -> FunctionCatalog:
        try:
            [(rows, combinators)] = client.query(
                "SELECT (SELECT groupArray((name, alias_to, is_aggregate, case_insensitive, categories)) "
                "FROM system.functions WHERE origin = 'System'), (SELECT groupArray(name) "
                "FROM system.aggregate_function_combinators WHERE NOT is_internal)"
            ).result_rows
        except ClickHouseError as exc:
            raise AdminSQLError(f"cannot read the server's function list: {_brief(exc)}") from None
        return cls.from_rows(
            [(str(n), str(a), bool(g), bool(i), str(c)) for n, a, g, i, c in rows],
            [str(c) for c in combinators],
        )

    def _lookup(self, name: str) -> _Function | None:
        fn = self.functions.get(name) or self.case_insensitive.get(name.lower())
        for _ in range(4):  # an alias names its function (e.g. hostname -> hostName)
            if fn is None or not fn.alias_to:
                break
            fn = self.functions.get(fn.alias_to) or self.case_insensitive.get(fn.alias_to.lower())
        return fn

    def _aggregate_under_combinators(self, name: str) -> _Function | None:
        """``sumStateIf`` -> sum: an aggregate function with combinator suffixes."""
        for suffix in self.combinators:
            if len(name) > len(suffix) and name.endswith(suffix):
                stem = name[: -len(suffix)]
                base = self._lookup(stem) or self._aggregate_under_combinators(stem)
                if base is not None and base.is_aggregate:
                    return base
        return None

    def refusal(self, name: str) -> str | None:
        """Why admin SQL may not call ``name``; None when it may."""
        if name in SYNTAX_FUNCTIONS:
            return None
        fn = self._lookup(name) or self._aggregate_under_combinators(name)
        if fn is None:
            return "it is not a ClickHouse built-in function"
        if fn.name in _WHY:
            return _WHY[fn.name]
        if fn.name in ALLOWED_UTILITIES:
            return None
        unsafe = [c for c in fn.categories if c not in SAFE_CATEGORIES] or (
            [] if fn.categories else ["uncategorised"]
        )
        if not unsafe:
            return None
        return _WHY.get(
            unsafe[0],
            f"only functions that compute on their arguments are allowed, and {fn.name} is in "
            f"category {unsafe[0]!r}",
        )


# --- the syntax tree ------------------------------------------------------------------------------------

# The keys each node type may carry (besides "type"); anything else is refused.
_NODES: dict[str, frozenset[str]] = {
    name: frozenset(keys.split())
    for name, keys in {
        "SelectWithUnionQuery": "union_mode list_of_modes list_of_selects is_outfile_append "
        "is_outfile_truncate is_into_outfile_with_stdout",
        "SelectQuery": "with recursive_with select distinct tables prewhere where group_by group_by_all "
        "group_by_with_totals group_by_with_rollup group_by_with_cube group_by_with_grouping_sets having "
        "window qualify order_by order_by_all limit_by_offset limit_by_length limit_by limit_offset "
        "limit_length limit_with_ties interpolate",
        "ExpressionList": "children",
        "TablesInSelectQuery": "children",
        "TablesInSelectQueryElement": "table_expression table_join array_join",
        "TableExpression": "database_and_table_name subquery final sample_size sample_offset",
        "TableIdentifier": "name name_parts alias",
        "TableJoin": "kind strictness locality on_expression using_expression_list",
        "ArrayJoin": "kind expression_list",
        "Subquery": "children alias",
        "WithElement": "name subquery",
        "Identifier": "name name_parts alias",
        "Literal": "value alias",
        "Function": "name arguments parameters alias is_operator is_lambda_function is_window_function "
        "kind window_name window_definition nulls_action",
        "Asterisk": "transformers",
        "QualifiedAsterisk": "qualifier transformers",
        "ColumnsRegexpMatcher": "pattern transformers",
        "ColumnsListMatcher": "column_list transformers",
        "QualifiedColumnsRegexpMatcher": "pattern qualifier transformers",
        "QualifiedColumnsListMatcher": "column_list qualifier transformers",
        "ColumnsTransformerList": "children",
        "ColumnsExceptTransformer": "children pattern is_strict",
        "ColumnsReplaceTransformer": "children is_strict",
        "ColumnsReplaceTransformerReplacement": "name children",
        "OrderByElement": "direction nulls_direction nulls_direction_was_explicitly_specified expression "
        "collation with_fill fill_from fill_to fill_step fill_staleness",
        "InterpolateElement": "column expr",
        "WindowListElement": "name definition",
        "WindowDefinition": "parent_window_name partition_by order_by frame_is_default frame_type "
        "frame_begin_type frame_begin_offset frame_begin_preceding frame_end_type frame_end_offset "
        "frame_end_preceding",
        "SampleRatio": "numerator denominator",
    }.items()
}
# Clauses and nodes refused by name, with what the admin is told.
_REFUSED_KEYS = {
    "out_file": "INTO OUTFILE",
    "compression": "INTO OUTFILE",
    "format_ast": "a FORMAT clause (answers are always JSON lines)",
    "settings_ast": "a SETTINGS clause (the proxy sets the limits)",
    "settings": "a SETTINGS clause (the proxy sets the limits)",
}
_REFUSED_NODES = {
    "SetQuery": "a SETTINGS clause (the proxy sets the limits)",
    "QueryParameter": "query parameters ({name:Type})",
    "ColumnsApplyTransformer": "APPLY (call the function on the columns instead)",
}
_FUNCTION_KINDS = frozenset({"ORDINARY_FUNCTION", "WINDOW_FUNCTION", "LAMBDA_FUNCTION"})


def _statement(node_type: str) -> str:
    """``InsertQuery`` -> ``INSERT``, ``KillQueryQuery`` -> ``KILL``, ``CreateQuery`` -> ``CREATE``."""
    words = re.findall(r"[A-Z][a-z]*", node_type.removesuffix("Query"))
    return (words[0] if words else node_type).upper()


def _name(node: Mapping[str, Any]) -> list[str]:
    parts = node.get("name_parts")
    if isinstance(parts, list) and parts and all(isinstance(p, str) for p in parts):
        return parts
    return [str(node.get("name", ""))]


def _clip(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


class _Walk:
    def __init__(self, database: str, catalog: FunctionCatalog) -> None:
        self.database = database
        self.catalog = catalog

    def table(self, parts: list[str], ctes: frozenset[str]) -> None:
        if len(parts) == 1 and parts[0] in ctes:
            return
        if len(parts) == 1:
            parts = [self.database, parts[0]]
        if len(parts) != 2 or parts[0] != self.database or parts[1] not in READABLE:
            raise AdminSQLError(
                f"admin SQL reads only this proxy's tables ({', '.join(READABLE)} in database "
                f"{self.database}); {_clip('.'.join(parts))} is not one of them"
            )

    def function(self, node: Mapping[str, Any], ctes: frozenset[str]) -> None:
        name = str(node.get("name", ""))
        kind = node.get("kind", "ORDINARY_FUNCTION")
        if kind not in _FUNCTION_KINDS:
            raise AdminSQLError(f"{_clip(str(kind))} is not allowed in admin SQL")
        why = self.catalog.refusal(name)
        if why is not None:
            raise AdminSQLError(f"function {_clip(name)}() is not allowed in admin SQL: {why}")
        if name in IN_FUNCTIONS:
            args = node.get("arguments", {}).get("children", [])
            if len(args) == 2 and isinstance(args[1], dict) and args[1].get("type") == "Identifier":
                self.table(_name(args[1]), ctes)

    def run(self, root: Any) -> None:
        if not isinstance(root, dict) or root.get("type") != "SelectWithUnionQuery":
            kind = root.get("type", "?") if isinstance(root, dict) else "?"
            raise AdminSQLError(f"admin SQL runs SELECT queries only; {_statement(str(kind))} is not allowed")
        stack: list[tuple[dict[str, Any], frozenset[str]]] = [(root, frozenset())]
        while stack:
            node, ctes = stack.pop()
            kind = str(node.get("type"))
            if kind in _REFUSED_NODES:
                raise AdminSQLError(f"{_REFUSED_NODES[kind]} is not allowed in admin SQL")
            allowed = _NODES.get(kind)
            if allowed is None:
                raise AdminSQLError(f"{_statement(kind)} ({kind}) is not allowed in admin SQL")
            for key in node:
                if key == "table_function" and kind == "TableExpression":
                    fn = _clip(str(node[key].get("name", "?")))
                    raise AdminSQLError(
                        f"table function {fn}() is not allowed: admin SQL reads this proxy's tables only"
                    )
                if key in _REFUSED_KEYS:
                    raise AdminSQLError(f"{_REFUSED_KEYS[key]} is not allowed in admin SQL")
                if key != "type" and key not in allowed:
                    raise AdminSQLError(
                        f"{kind}.{key} is not allowed in admin SQL (not known to be read-only)"
                    )
            if kind == "SelectWithUnionQuery" and any(
                node.get(flag)
                for flag in ("is_outfile_append", "is_outfile_truncate", "is_into_outfile_with_stdout")
            ):
                raise AdminSQLError(f"{_REFUSED_KEYS['out_file']} is not allowed in admin SQL")
            elif kind == "SelectQuery":
                defined = node.get("with", {}).get("children", [])
                ctes = ctes | {
                    str(w.get("name"))
                    for w in defined
                    if isinstance(w, dict) and w.get("type") == "WithElement"
                }
            elif kind == "TableIdentifier":
                self.table(_name(node), ctes)
            elif kind == "Function":
                self.function(node, ctes)
            elif kind == "Literal":
                continue  # a value: nothing below it is syntax
            for key, value in node.items():
                for child in value if isinstance(value, list) else [value]:
                    if isinstance(child, dict):
                        if not isinstance(child.get("type"), str):
                            raise AdminSQLError(
                                f"{kind}.{key} is not allowed in admin SQL (not known to be read-only)"
                            )
                        stack.append((child, ctes))


def check(tree: Any, database: str, catalog: FunctionCatalog) -> None:
    """Raise :class:`AdminSQLError` unless ``tree`` (``parseQueryToJSON``) only reads this proxy's tables."""
    _Walk(database, catalog).run(tree)


# --- ClickHouse does the parsing --------------------------------------------------------------------------

_PARSE = "WITH formatQuerySingleLine({sql:String}) AS canonical SELECT canonical, parseQueryToJSON(canonical)"
_CODE = re.compile(r"Code: (\d+)\. (?:DB::Exception: )?(.*)", re.S)
_NAME = re.compile(r"^(.*?)\s*\(([A-Z][A-Z0-9_]+)\)\s*$", re.S)
# Errors whose text quotes the query, never a stored value: passed on, to help fix the SQL. (A failed
# conversion, CANNOT_PARSE_TEXT and the like, can quote a stored value: those are reported by code only.)
_SQL_ERRORS = frozenset({10, 16, 20, 42, 43, 46, 47, 60, 62, 81, 179, 181, 184, 207, 215, 352, 475, 628})


class ParsedQuery(NamedTuple):
    canonical: str  # the one statement, as ClickHouse formats it: what runs
    tree: Any  # parseQueryToJSON of ``canonical``


def _parts(exc: BaseException) -> tuple[int | None, str, str]:
    """(code, message, NAME) of a ClickHouse error. The message is its first line, cut before ClickHouse's
    ``In scope ...`` (a copy of the query that ran: our wrapper, when parsing)."""
    match = _CODE.search(str(exc))
    if match is None:
        return None, "", ""
    body = match.group(2).split(" (version ", 1)[0].strip()
    named = _NAME.match(body)
    message, name = (named.group(1), named.group(2)) if named else (body, "")
    message = re.split(r"[:.]? In scope ", message, maxsplit=1)[0].split("\n", 1)[0].strip()
    return int(match.group(1)), message, name


def _brief(exc: BaseException) -> str:
    code, _, name = _parts(exc)
    return f"{name or type(exc).__name__} (ClickHouse code {code})" if code else type(exc).__name__


def parse(client: Client, sql: str) -> ParsedQuery:
    """ClickHouse's canonical text for ``sql`` and that text's syntax tree; nothing is run."""
    try:
        [(canonical, tree)] = client.query(_PARSE, parameters={"sql": sql}).result_rows
    except ClickHouseError as exc:
        code, message, _ = _parts(exc)
        if code == 46:
            raise AdminSQLError(
                "this ClickHouse server cannot show a query's syntax tree (parseQueryToJSON, ClickHouse 26.8 "
                "and later), so admin SQL cannot be checked and does not run"
            ) from None
        if code == 36 and "JSON serialization" in message:
            node = re.search(r"'(\w+)'", message)
            what = _statement(node.group(1)) if node else "this statement"
            raise AdminSQLError(f"admin SQL runs SELECT queries only; {what} is not allowed") from None
        if code == 62:
            raise AdminSQLError(message or "syntax error") from None
        raise AdminSQLError(f"ClickHouse could not parse the query: {_brief(exc)}") from None
    try:
        return ParsedQuery(str(canonical), orjson.loads(tree))
    except orjson.JSONDecodeError:
        raise AdminSQLError("the query nests too deeply to be checked") from None


def confine(client: Client, sql: str, database: str, catalog: FunctionCatalog) -> str:
    """The SQL to run for the admin's ``sql``, or :class:`AdminSQLError` saying what is not allowed.

    What runs is ``SELECT * FROM (<the checked statement>)``, itself parsed and checked again: ClickHouse
    does not apply the result limits to a query that reads no table (it reads ``system.one``), and does
    to this one. Columns and row order are those of the statement."""
    statement = parse(client, sql)
    check(statement.tree, database, catalog)
    # checked statement, in ClickHouse's own formatting; the result is parsed and checked in turn
    wrapped = parse(client, f"SELECT * FROM ({statement.canonical})")  # noqa: S608
    check(wrapped.tree, database, catalog)
    return wrapped.canonical


def query_error(exc: BaseException, limits: AdminQuerySettings) -> AdminSQLError:
    """What the admin is told when ClickHouse stops a checked query: a limit by name, a SQL mistake with
    ClickHouse's words, anything else by code only (a value-conversion error can quote a stored value)."""
    code, message, name = _parts(exc)
    if code == 159:
        return AdminSQLError(
            f"the query ran longer than clickhouse.admin_query.max_seconds ({limits.max_seconds:g} s)"
        )
    if code == 241:
        return AdminSQLError(
            "the query needed more memory than clickhouse.admin_query.max_memory_bytes "
            f"({limits.max_memory_bytes} bytes)"
        )
    if code == 396:
        return AdminSQLError(
            f"the result is larger than clickhouse.admin_query.max_result_rows ({limits.max_result_rows} "
            f"rows) or max_result_bytes ({limits.max_result_bytes} bytes): aggregate, or add a LIMIT"
        )
    if code in _SQL_ERRORS and message:
        return AdminSQLError(f"{message} ({name or f'code {code}'})")
    return AdminSQLError(f"ClickHouse refused the query: {_brief(exc)}")
