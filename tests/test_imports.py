"""Every module of the package imports on its own: no module depends on the order in which
``workbench/__init__.py`` happens to import the others (an import cycle hidden by that order
breaks as soon as the package's ``__init__`` becomes lazy or a user imports a submodule first).
"""
from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import workbench

PACKAGE_DIR = Path(workbench.__file__).parent

#: Runs in a fresh interpreter. For each module, every ``workbench`` module imported so far is
#: dropped and the package is replaced by an empty one (its ``__init__`` not run), so the module
#: gets only what its own imports bring in. Third-party packages stay loaded (speed).
IMPORT_EACH = '''
import importlib, json, sys, traceback, types
package_dir, names = sys.argv[1], json.loads(sys.argv[2])
failures = {}
for name in names:
    for loaded in [m for m in sys.modules if m == "workbench" or m.startswith("workbench.")]:
        del sys.modules[loaded]
    package = types.ModuleType("workbench")
    package.__path__ = [package_dir]
    sys.modules["workbench"] = package
    try:
        importlib.import_module(name)
    except Exception:
        failures[name] = traceback.format_exc(limit=-3)
print(json.dumps(failures))
'''


#: not modules to import: the command line's entry point, and a traitlets config file (Voilà
#: executes it with ``get_config`` defined)
NOT_IMPORTED = {"workbench.__main__", "workbench.voila_config.voila"}


def package_modules() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages([str(PACKAGE_DIR)], "workbench.")
                  if info.name not in NOT_IMPORTED)


def test_the_package_has_its_modules():
    names = package_modules()
    assert {"workbench.engine", "workbench.methods.cam", "workbench.patterns",
            "workbench.arguments", "workbench.forward"} <= set(names)


def test_every_module_imports_on_its_own():
    names = package_modules()
    done = subprocess.run([sys.executable, "-c", IMPORT_EACH, str(PACKAGE_DIR), json.dumps(names)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    failures = json.loads(done.stdout.strip().splitlines()[-1])
    assert not failures, "\n".join(f"{name}:\n{error}" for name, error in failures.items())


#: Runs in a fresh interpreter: what ``import workbench`` loads, then its public names.
LAZY_PACKAGE = '''
import json, sys
import workbench.study, widgets.study_app
light = "torch" in sys.modules
import workbench.methods  # the subpackage first: ``wb.methods`` must stay the function
import workbench as wb
print(json.dumps({"torch_before_use": light, "methods": callable(wb.methods),
                  "listed": "gradient" in wb.methods(), "basis": wb.basis.__name__,
                  "all": sorted(n for n in wb.__all__ if getattr(wb, n, None) is None)}))
'''


def test_the_package_loads_pytorch_only_when_a_public_name_is_used():
    """``workbench`` and ``widgets`` load their names on first use (the study's participant
    page needs neither PyTorch nor the engine); every public name still resolves."""
    done = subprocess.run([sys.executable, "-c", LAZY_PACKAGE], capture_output=True, text=True,
                          timeout=300, cwd=PACKAGE_DIR.parent)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "torch_before_use": False, "methods": True, "listed": True, "basis": "workbench.basis",
        "all": []}


def test_the_registry_knows_every_method_without_the_package_init():
    """A caller that reads the registry directly (the Explorer, the method picker) finds every
    method even though ``import workbench`` no longer imports the method declarations."""
    code = ("from workbench.registry import get_method, methods\n"
            "print(get_method('gradient').name, 'integrated_gradients' in methods())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=PACKAGE_DIR.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["gradient", "True"]
