"""The query parameters an API operation takes are the ones its OpenAPI schema declares, and no others.

A parameter a client misspells (`?tags=math` for `?tag=math`) would otherwise be ignored, and the answer would look
right while filtering nothing. Every project-scoped operation answers one the same way: a 400 naming it, with the
parameters it takes. The list is read from the operation's own `extend_schema(parameters=...)`, so the schema and
the check cannot drift apart.
"""

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, serializers
from rest_framework.views import APIView

# DRF's renderer choice (`?format=json`) is read before any view code runs, and the schema view takes it too: it is
# taken by every operation without being declared by each.
ALWAYS_TAKEN = frozenset({"format"})

_declared: dict[tuple[type, str], frozenset[str]] = {}


def declared_query_parameters(view: APIView, method: str) -> frozenset[str]:
    """The query parameters the schema declares for `method` on `view` (a view in a request: its schema reads it)."""
    key = (type(view), method.upper())
    if key not in _declared:
        _declared[key] = frozenset(_names(view, method.upper()))
    return _declared[key]


def _names(view: APIView, method: str) -> set[str]:
    # What drf-spectacular's generator does for each operation: @extend_schema on a method leaves its schema class
    # in the method's `kwargs`, instantiated per view (see SchemaGenerator.create_view).
    handler = getattr(view, method.lower(), None)
    view_class: type[AutoSchema] = type(view.schema)  # type: ignore[assignment]  # ProjectScopedApiSchema
    schema_class: type[AutoSchema] = getattr(handler, "kwargs", {}).get("schema") or view_class
    if not issubclass(schema_class, view_class):  # extend_schema could not see the view's schema class
        mro = tuple(cls for cls in schema_class.__mro__ if cls not in AutoSchema.__mro__) + view_class.__mro__
        schema_class = type("ExtendedRearrangedSchema", mro, {})
    schema = schema_class()
    schema.view = view
    schema.method = method
    names: set[str] = set()
    for parameter in schema.get_override_parameters():
        if isinstance(parameter, OpenApiParameter):
            if parameter.location == OpenApiParameter.QUERY:
                names.add(parameter.name)
        elif isinstance(parameter, serializers.Serializer) or (
            isinstance(parameter, type) and issubclass(parameter, serializers.Serializer)
        ):
            names.update(_serializer(parameter).fields)
    return names


def _serializer(parameter: Any) -> serializers.Serializer:
    return parameter() if isinstance(parameter, type) else parameter


def refuse_unknown_parameters(view: APIView, method: str, given: set[str]) -> None:
    """A 400 naming each parameter in `given` that the operation does not take."""
    taken = declared_query_parameters(view, method) | ALWAYS_TAKEN
    unknown = sorted(given - taken)
    if unknown:
        expected = f"Unknown parameter. Expected one of {', '.join(sorted(taken))}."
        raise exceptions.ValidationError({name: [expected] for name in unknown})
