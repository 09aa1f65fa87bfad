"""docs/adopt-tongcha.md: a platform's engineers can write every SDK name it uses."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

GUIDE = Path(__file__).parents[2] / "docs" / "adopt-tongcha.md"
SDK_MODULES = ("tongcha.sdk.platform", "tongcha.sdk.protocol", "tongcha.sdk.stores")


def _imports(text: str) -> dict[str, str]:
    """Each name the guide imports from the SDK, with the module it imports it from."""
    found: dict[str, str] = {}
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    inline = [" ".join(span.split()) for span in re.findall(r"`(from tongcha\.sdk[^`]*)`", text)]
    for source in [*blocks, *inline]:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tongcha.sdk"):
                found.update({alias.name: node.module or "" for alias in node.names})
    return found


def test_every_sdk_name_the_guide_uses_is_imported_from_where_it_lives() -> None:
    # HandlerError was raised in the guide but never imported: a reader had to search.
    text = GUIDE.read_text(encoding="utf-8")
    imported = _imports(text)
    for name, module in imported.items():
        assert hasattr(importlib.import_module(module), name), f"{module} has no {name}"
    exported = {
        name
        for module in SDK_MODULES
        for name, value in vars(importlib.import_module(module)).items()
        if isinstance(value, type) and value.__module__.startswith("tongcha.sdk")
    }
    used = {name for name in re.findall(r"`([A-Z]\w*)", text) if name in exported}
    assert "HandlerError" in used
    assert used - set(imported) == set()
