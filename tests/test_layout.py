"""The floor plan: the README's Layout lists every module, and imports only go down the layers."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("chat", "config")

# Lowest first. A module may import only from its own layer or a lower one (and never in a loop).
LAYERS: list[tuple[str, ...]] = [
    (
        "chat.errors",
        "chat.models",
        "chat.rows",
        "chat.dispatch",
        "chat.per_loop",
        "chat.memory_layer",
        "chat.tree",
        "chat.files",
        "config.env",
        "config.sqlite",
        "config.settings",
    ),
    ("chat.providers", "chat.redis_clients"),
    (
        "chat.live",
        "chat.selectors",
        "chat.search",
        "chat.limits",
        "chat.prompts",
        "chat.teams",
        "chat.costs",
        "chat.review",
    ),
    ("chat.events", "chat.services"),
    ("chat.engine",),
    ("chat.actions", "chat.sessions", "chat.health", "chat.fanout"),
    (
        "chat.api",
        "chat.history_api",
        "chat.attachments_api",
        "chat.sse",
        "chat.v1",
        "chat.consumers",
        "chat.views",
        "chat.sso",
        "chat.middleware",
        "chat.admin",
        "chat.export",
        "chat.management",
    ),
    ("chat.urls", "chat.accounts_urls", "chat.routing", "chat.apps", "config.urls", "config.asgi"),
]
# The engine's door: outside chat/engine, only these may import from it, and only this module of it.
ENGINE_DOOR = "chat.engine.jobs"
WORKER_ENTRY_POINTS = {"chat.management.commands.runworker"}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """Every chat/config module `path` imports, at module level or inside functions."""
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                imported.add(submodule if submodule in known else node.module)
    return {name for name in imported if name in known}


def layer_of(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return index
    raise AssertionError(f"{module} has no layer: add it to LAYERS in tests/test_layout.py")


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, known) - {name} for name, path in known.items() if name not in PACKAGES}


def test_every_module_has_a_layer(graph):
    for module in graph:
        layer_of(module)


def test_imports_only_go_down_the_layers(graph):
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_no_modules_import_each_other_in_a_loop(graph):
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in visiting:
            loop = visiting[visiting.index(module) :] + [module]
            raise AssertionError("import loop: " + " -> ".join(loop))
        if module in done:
            return
        visiting.append(module)
        for target in sorted(graph.get(module, ())):
            visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_web_side_imports_only_the_engines_door(graph):
    through_the_wall = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        if not module.startswith("chat.engine") and module not in WORKER_ENTRY_POINTS
        for target in targets
        if target.startswith("chat.engine") and target != ENGINE_DOOR
    ]
    assert not through_the_wall, "\n".join(through_the_wall)


def readme_layout() -> dict[str, str]:
    """Module path -> its one-line description, from the README's Layout tree (two spaces a level)."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Layout\n.*?```\n(.*?)```", readme, re.S)
    assert block, "README.md has no Layout block"
    listed: dict[str, str] = {}
    folders: list[str] = []
    for line in block.group(1).splitlines():
        depth = (len(line) - len(line.lstrip(" "))) // 2
        entry, _, description = line.strip().partition(" ")
        del folders[depth:]
        if entry.endswith("/"):
            folders.append(entry)
        elif entry.endswith(".py"):
            path = "".join(folders) + entry
            assert path not in listed, f"{path} is listed twice"
            listed[path] = description.strip()
    return listed


def test_the_readme_layout_lists_every_module_and_nothing_that_is_gone():
    on_disk = {str(path.relative_to(ROOT)) for path in modules().values() if path.name != "__init__.py"}
    listed = readme_layout()
    assert sorted(on_disk - set(listed)) == [], "modules missing from README.md's Layout"
    assert sorted(set(listed) - on_disk) == [], "README.md's Layout lists modules that are gone"
    assert all(listed.values()), [path for path, description in listed.items() if not description]
