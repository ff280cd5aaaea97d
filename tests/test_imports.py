"""TensorFlow never enters the napari process (DESIGN.md): importing the package, the geometry
and every module the GUI loads leaves ``tensorflow`` out of ``sys.modules``.

Each check runs in a fresh interpreter, since this pytest process imports TensorFlow elsewhere.
"""

import pkgutil
import subprocess
import sys

import pytest

import napari_patchheat

# modules that exist to run TensorFlow: imported only by the inference worker
TF_MODULES = {"napari_patchheat.inference"}


def gui_side_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(napari_patchheat.__path__, "napari_patchheat.")]
    return sorted(n for n in names if n not in TF_MODULES and not n.startswith("napari_patchheat.models."))


def loads_tensorflow(*modules: str) -> bool:
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + \
        "print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


def test_package_grid_and_widget_side_modules_do_not_import_tensorflow():
    modules = gui_side_modules()
    assert "napari_patchheat.grid" in modules and "napari_patchheat.extract" in modules
    assert not loads_tensorflow("napari_patchheat", *modules)


def test_the_check_can_fail():
    assert loads_tensorflow("napari_patchheat.grid", "tensorflow")


@pytest.mark.parametrize("name", napari_patchheat.__all__)
def test_public_names_resolve(name):
    assert getattr(napari_patchheat, name).__name__ == name
