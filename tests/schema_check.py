"""A small JSON Schema checker for the subset ``streamrec schema`` prints (``jsonschema`` is
not a dependency, nor installed in the project's venv).

It knows: ``$ref`` (local ``#/$defs/...``), ``$defs``, ``type`` (object, array, string,
number, integer, boolean, null), ``properties``, ``required``, ``additionalProperties``
(a schema or a boolean), ``items`` (a schema or false), ``prefixItems``, ``minItems``,
``maxItems``, ``anyOf``, ``enum``, ``minLength``, ``maxLength``; annotations (``title``,
``description``, ``default``, ``$schema``) are ignored. Any other keyword raises
``UnknownKeyword``, so a schema growing a rule this checker would silently skip fails the
test instead of passing it. Properties not listed are allowed (JSON Schema's default).
"""

from __future__ import annotations

from typing import Any

ANNOTATIONS = {"title", "description", "default", "$schema", "$defs"}
KNOWN = ANNOTATIONS | {"$ref", "type", "properties", "required", "additionalProperties", "items",
                       "prefixItems", "minItems", "maxItems", "anyOf", "enum", "minLength",
                       "maxLength"}


class UnknownKeyword(ValueError):
    pass


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if name == "integer":
        # Stricter than the spec (which takes 1.0): msgspec's decoders refuse 1.0 for an int.
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    raise UnknownKeyword(f"type {name!r}")


def errors(value: Any, schema: dict[str, Any] | bool, root: dict[str, Any] | None = None,
           where: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema`` (empty: it conforms), each naming its path."""
    if schema is True:
        return []
    if schema is False:
        return [f"{where}: no value is allowed here"]
    root = schema if root is None else root
    unknown = set(schema) - KNOWN
    if unknown:
        raise UnknownKeyword(f"{where}: {sorted(unknown)}")
    found: list[str] = []
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/$defs/"):
            raise UnknownKeyword(f"{where}: $ref {ref!r}")
        found += errors(value, root["$defs"][ref.removeprefix("#/$defs/")], root, where)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, name) for name in types):
            return found + [f"{where}: {type(value).__name__} is not {'/'.join(types)}"]
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if "anyOf" in schema:
        options = [errors(value, option, root, where) for option in schema["anyOf"]]
        if all(options):
            found.append(f"{where}: matches none of anyOf ({'; '.join(o[0] for o in options)})")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            found.append(f"{where}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            found.append(f"{where}: longer than {schema['maxLength']}")
    if isinstance(value, dict):
        found += [f"{where}: missing required {name!r}" for name in schema.get("required", [])
                  if name not in value]
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                found += errors(item, properties[name], root, f"{where}.{name}")
            elif "additionalProperties" in schema:
                found += errors(item, schema["additionalProperties"], root, f"{where}.{name}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            found.append(f"{where}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            found.append(f"{where}: more than {schema['maxItems']} items")
        prefix = schema.get("prefixItems", [])
        for index, item in enumerate(value):
            rule = prefix[index] if index < len(prefix) else schema.get("items", True)
            found += errors(item, rule, root, f"{where}[{index}]")
    return found
