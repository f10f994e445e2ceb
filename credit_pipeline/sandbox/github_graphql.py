"""``POST /graphql``: queries validated against GitHub's published schema, then executed.

The SDL (``data/github-graphql/schema.graphql``, 1.2 MB) is built once per process, lazily and
under a lock, and shared by every server instance: resolvers are plain dict lookups (graphql-core's
default resolver calls a callable value with ``(info, **args)``), so nothing is bound to the schema.

Before execution a static pass enforces GitHub's connection rules (``first``/``last`` required,
at most 100, not both; at most 500,000 nodes) and computes the rate-limit cost GitHub's way: one
request per connection per parent node, summed, divided by 100, rounded, at least 1.
Implemented data: ``search(query:, type: ISSUE)`` (``github_connections.search_connection``), ``repository(owner:, name:)`` with ``pullRequests``, ``pullRequest(number:)``,
``issues``, ``issue(number:)``; PR ``reviews``; actors (``User`` / ``Bot``; deleted users are
``null``; Bot logins have no ``[bot]`` suffix); ``viewer``; ``rateLimit``. Other schema-valid fields
resolve to null (and to an error where the schema says non-null).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphql import (
    FieldNode, FragmentDefinitionNode, FragmentSpreadNode, GraphQLError, GraphQLSchema, InlineFragmentNode,
    OperationDefinitionNode, build_schema, execute, get_named_type, parse, validate,
)
from graphql.utilities import value_from_ast_untyped

from credit_pipeline.sandbox.github_connections import GraphQLContext, build_root

SCHEMA_PATH = Path(__file__).with_name("data") / "github-graphql" / "schema.graphql"
MAX_PAGE = 100
MAX_NODES = 500_000
_schema: GraphQLSchema | None = None
_schema_lock = threading.Lock()


def github_schema() -> GraphQLSchema:
    """GitHub's schema, built on first use (~0.6 s) and cached for the process.

    The published SDL defines two ``EnterpriseOwnerInfo`` fields twice, which graphql-core's SDL
    validation rejects, so SDL validation is skipped; the built schema itself is valid."""
    global _schema
    with _schema_lock:
        if _schema is None:
            path = Path(os.environ.get("CREDIT_PIPELINE_GITHUB_SCHEMA", SCHEMA_PATH))
            _schema = build_schema(path.read_text(encoding="utf-8"), assume_valid_sdl=True)
        return _schema


@dataclass
class Analysis:
    cost: int
    node_count: int
    errors: list[dict[str, Any]]


def _loc(node: Any) -> list[dict[str, int]]:
    if node.loc is None:
        return []
    location = node.loc.source.get_location(node.loc.start)
    return [{"line": location.line, "column": location.column}]


def analyze(schema: GraphQLSchema, document: Any, variables: dict[str, Any], operation_name: str | None) -> Analysis:
    """Check pagination arguments and compute GitHub's cost for the selected operation."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    operation = next((o for o in operations if operation_name is None or (o.name and o.name.value == operation_name)),
                     None)
    totals = {"requests": 0, "nodes": 0}
    errors: list[dict[str, Any]] = []

    def argument(node: FieldNode, name: str) -> Any:
        for arg in node.arguments:
            if arg.name.value == name:
                return value_from_ast_untyped(arg.value, variables)
        return None

    def walk(selection_set: Any, parent: Any, multiplier: int) -> None:
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                fields = getattr(parent, "fields", {})
                definition = fields.get(sel.name.value)
                if definition is None:
                    continue
                named = get_named_type(definition.type)
                child = multiplier
                if named.name.endswith("Connection"):
                    child = multiplier * _check_page(sel, argument(sel, "first"), argument(sel, "last"), errors)
                    totals["requests"] += multiplier
                    totals["nodes"] += child
                if sel.selection_set:
                    walk(sel.selection_set, named, child)
            elif isinstance(sel, InlineFragmentNode):
                target = schema.get_type(sel.type_condition.name.value) if sel.type_condition else parent
                walk(sel.selection_set, target, multiplier)
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value in fragments:
                fragment = fragments[sel.name.value]
                walk(fragment.selection_set, schema.get_type(fragment.type_condition.name.value), multiplier)

    if operation is not None:
        root = schema.query_type if operation.operation.value == "query" else schema.mutation_type
        walk(operation.selection_set, root, 1)
    if totals["nodes"] > MAX_NODES:
        errors.append({"type": "MAX_NODE_LIMIT_EXCEEDED",
                       "message": f"This query requests up to {totals['nodes']:,} possible nodes which exceeds "
                                  f"the maximum limit of {MAX_NODES:,}."})
    return Analysis(max(1, round(totals["requests"] / 100)), totals["nodes"], errors)


def _check_page(node: FieldNode, first: Any, last: Any, errors: list[dict[str, Any]]) -> int:
    name = node.name.value
    if first is None and last is None:
        errors.append({"type": "MISSING_PAGINATION_BOUNDARIES", "locations": _loc(node),
                       "message": f"You must provide a `first` or `last` value to properly paginate the `{name}` connection."})
        return 0
    if first is not None and last is not None:
        errors.append({"type": "EXCESSIVE_PAGINATION", "locations": _loc(node),
                       "message": f"Passing both `first` and `last` to paginate the `{name}` connection is not supported."})
        return 0
    which, value = ("first", first) if first is not None else ("last", last)
    if not isinstance(value, int) or value < 0 or value > MAX_PAGE:
        errors.append({"type": "EXCESSIVE_PAGINATION", "locations": _loc(node),
                       "message": f"Requesting {value} records on the `{name}` connection exceeds the `{which}` "
                                  f"limit of {MAX_PAGE} records."})
        return 0
    return value


_UNDEFINED_FIELD = re.compile(r"Cannot query field '(?P<field>\w+)' on type '(?P<type>\w+)'\.")


def format_error(error: GraphQLError) -> dict[str, Any]:
    """GitHub-style error: ``type`` at the top level, GitHub's wording for unknown fields."""
    out = dict(error.formatted)
    extensions = dict(out.pop("extensions", None) or {})
    if "type" in extensions:
        out["type"] = extensions.pop("type")
    match = _UNDEFINED_FIELD.match(error.message)
    if match:
        out["message"] = f"Field '{match['field']}' doesn't exist on type '{match['type']}'"
        extensions.update(code="undefinedField", typeName=match["type"], fieldName=match["field"])
    if extensions:
        out["extensions"] = extensions
    return out


@dataclass
class GraphQLOutcome:
    payload: dict[str, Any]
    cost: int
    status: int = 200


def run_query(ctx: GraphQLContext, body: Any, charge: Any) -> GraphQLOutcome:
    """Validate, cost, charge (``charge(cost) -> dict | None``; None = over the limit), execute."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return GraphQLOutcome({"errors": [{"message": "A query attribute must be specified and must be a string."}]}, 0)
    variables = body.get("variables") or {}
    operation_name = body.get("operationName")
    schema = github_schema()
    try:
        document = parse(body["query"])
    except GraphQLError as exc:
        return GraphQLOutcome({"errors": [format_error(exc)]}, 0)
    errors = validate(schema, document)
    if errors:
        return GraphQLOutcome({"errors": [format_error(e) for e in errors]}, 0)
    analysis = analyze(schema, document, variables, operation_name)
    if analysis.errors:
        return GraphQLOutcome({"errors": analysis.errors}, 0)
    rate = charge(analysis.cost)
    if rate is None:
        return GraphQLOutcome(
            {"errors": [{"type": "RATE_LIMITED", "code": "graphql_rate_limit",
                         "message": f"API rate limit exceeded for user ID {ctx.viewer.id}."}]}, 0)
    ctx.rate = {**rate, "cost": analysis.cost, "nodeCount": analysis.node_count}
    result = execute(schema, document, root_value=build_root(ctx), variable_values=variables,
                     operation_name=operation_name, context_value=ctx)
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [format_error(e) for e in result.errors]
    return GraphQLOutcome(payload, analysis.cost)
