"""Make ``api_activity.schema.json``: the JSON Schema of OCSF class 6003 (API Activity).

Source: the OCSF schema repository (github.com/ocsf/ocsf-schema), version 1.8.0, commit
3dcb905d26523ce4d5d0ba3c28c8507e2c859407 ("v1.8.0 prep"), compiled with ocsf-lib's compiler
(PyPI ``ocsf-lib``), then turned into a JSON Schema (draft 2020-12) by this script:

    python -m ocsf.compile OCSF_SCHEMA_CHECKOUT > compiled.json
    python tests/tools/ocsf/make_schema.py compiled.json OCSF_SCHEMA_CHECKOUT \
        > tests/tools/ocsf/api_activity.schema.json

The rules: every attribute the compiled class or object defines is a property (nothing else:
``additionalProperties`` is false, so a misspelt or invented field fails); an attribute is
required when OCSF says ``required`` and it is not brought in by an optional profile (the
class's own definition file decides for attributes a profile also adds); ``*_id`` enums are
closed integer enums; OCSF's generic ``object`` (``unmapped``) is an open JSON object;
OCSF's ``at_least_one`` / ``just_one`` constraints become ``anyOf`` / ``oneOf``; OCSF
types map to JSON types (timestamps are integers, milliseconds).
The vendored file is regenerated only by hand, when moving to a new OCSF version.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SCALARS = {
    "boolean_t": {"type": "boolean"},
    "float_t": {"type": "number"},
    "integer_t": {"type": "integer"},
    "long_t": {"type": "integer"},
    "port_t": {"type": "integer"},
    "timestamp_t": {"type": "integer"},
    "json_t": {},
    "object": {"type": "object"},
}


def attribute_schema(schema: dict[str, Any], attr: dict[str, Any]) -> dict[str, Any]:
    kind = attr["type"]
    if kind != "object" and kind in schema["objects"]:  # "object": OCSF's open object
        one: dict[str, Any] = {"$ref": f"#/$defs/{kind}"}
    else:
        one = dict(SCALARS.get(kind, {"type": "string"}))
        enum = attr.get("enum")
        if enum and kind in ("integer_t", "long_t") and attr.get("sibling") is not None:
            one["enum"] = sorted(int(k) for k in enum)
    return {"type": "array", "items": one} if attr.get("is_array") else one


def record_schema(
    schema: dict[str, Any], record: dict[str, Any], own: set[str] | None = None
) -> dict[str, Any]:
    props: dict[str, Any] = {}
    required: list[str] = []
    for name, attr in sorted(record["attributes"].items()):
        props[name] = attribute_schema(schema, attr)
        by_profile = attr.get("profile") is not None and (own is None or name not in own)
        if attr.get("requirement") == "required" and not by_profile:
            required.append(name)
    out: dict[str, Any] = {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }
    constraints = record.get("constraints") or {}
    if "at_least_one" in constraints:
        out["anyOf"] = [{"required": [n]} for n in constraints["at_least_one"]]
    if "just_one" in constraints:
        out["oneOf"] = [{"required": [n]} for n in constraints["just_one"]]
    return out


def main(compiled: Path, source: Path) -> None:
    schema = json.loads(compiled.read_text())
    cls = schema["classes"]["api_activity"]
    own_file = source / "events" / "application" / "api_activity.json"
    own = set(json.loads(own_file.read_text())["attributes"])
    defs: dict[str, Any] = {}
    todo = [cls]
    while todo:
        record = todo.pop()
        for attr in record["attributes"].values():
            kind = attr["type"]
            if kind != "object" and kind in schema["objects"] and kind not in defs:
                defs[kind] = {}
                todo.append(schema["objects"][kind])
    for kind in defs:
        defs[kind] = record_schema(schema, schema["objects"][kind])
    top = record_schema(schema, cls, own)
    top["properties"]["class_uid"] = {"const": cls["uid"]}
    out = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (
            f"OCSF {schema['version']} class api_activity ({cls['uid']}); made by "
            "tests/tools/ocsf/make_schema.py from ocsf-schema commit "
            "3dcb905d26523ce4d5d0ba3c28c8507e2c859407 compiled by ocsf-lib"
        ),
        "title": cls["caption"],
        **top,
        "$defs": dict(sorted(defs.items())),
    }
    sys.stdout.write(json.dumps(out, indent=None, sort_keys=False, separators=(",", ":")))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
