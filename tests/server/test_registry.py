"""The agent-facing surface is deliberate: the tool list and schemas are pinned, and every tool
is named, annotated and documented for a model.

After an intended change, regenerate the snapshot with
``UPDATE_SNAPSHOTS=1 python -m pytest tests/server/test_registry.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from charter.home import Home
from charter.testing import server_for

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(__file__).with_name("tool_surface.json")


async def surface(home: Home) -> list[dict[str, Any]]:
    async with Client(await server_for(home, "alpha")) as client:
        tools = (await client.list_tools()).tools
    return [
        {
            "name": t.name,
            "title": t.title,
            "description": t.description,
            "annotations": t.annotations.model_dump(exclude_none=True) if t.annotations else None,
            "input_schema": t.input_schema,
            "output_schema": t.output_schema,
        }
        for t in sorted(tools, key=lambda t: t.name)
    ]


async def test_tool_surface_matches_the_snapshot(home: Home) -> None:
    current = await surface(home)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    pinned = json.loads(SNAPSHOT.read_text())
    assert [t["name"] for t in current] == [t["name"] for t in pinned]
    for now, then in zip(current, pinned, strict=True):
        assert json.loads(json.dumps(now)) == then, f"{now['name']} changed: regenerate"


async def test_every_tool_is_named_annotated_and_documented(home: Home) -> None:
    readme = (ROOT / "README.md").read_text()
    skill = (ROOT / "skills" / "charter" / "SKILL.md").read_text()
    for tool in await surface(home):
        name = tool["name"]
        assert re.fullmatch(r"(identity|token|email|secret|audit|agent)_[a-z_]+", name), name
        ann = tool["annotations"]
        assert ann is not None, name
        for hint in ("read_only_hint", "destructive_hint", "open_world_hint"):
            assert hint in ann, (name, hint)
        description = tool["description"]
        assert len(description) > 80, name
        assert re.search(r"scope|[Nn]eeds no", description), f"{name} does not say its scope"
        assert re.search(r"side\s+effect", description, re.I), f"{name}: say its side effects"
        assert f"`{name}`" in readme, f"{name} missing from the README's tool table"
        assert name in skill, f"{name} missing from the Claude Code skill"


@pytest.mark.parametrize("required", ["identity_whoami", "audit_query", "audit_verify"])
async def test_foundation_tools_exist(home: Home, required: str) -> None:
    assert required in {t["name"] for t in await surface(home)}
