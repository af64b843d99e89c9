"""The package as users get it: a wheel built from the project and installed (not editable) into a
throwaway venv renders the default lab from any directory, exactly as the checkout does."""

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from lab import model, render

ROOT = Path(__file__).resolve().parent.parent

# Run in the throwaway venv: where lab and lab.yaml come from, and every file of the default lab
# on every substrate, {substrate: {node: {path: [text, mode]}}}.
RENDER = """
import json, lab
from lab import model, render
out = {s: {n: {p: [f.text, f.mode] for p, f in files.items()}
           for n, files in render.render(model.load(), s).items()} for s in render.FORMS}
print(json.dumps({"lab": lab.__file__, "default": str(model.DEFAULT_LAB), "render": out}))
"""


def rendered_here() -> dict:
    return {s: {n: {p: [f.text, f.mode] for p, f in files.items()}
                for n, files in render.render(model.load(), s).items()} for s in render.FORMS}


def run(*argv, **kw) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, **kw)
    assert done.returncode == 0, f"{argv[:4]} failed:\n{done.stderr}"
    return done.stdout


def test_installed_wheel_renders_the_default_lab(tmp_path):
    # A copy of the project: the build's build/ and egg-info stay out of the checkout.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True,
                    ignore=shutil.ignore_patterns(".*", "__pycache__", "*.egg-info", "build", "out"))
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", str(tmp_path / "dist"), str(src))
    (wheel,) = (tmp_path / "dist").glob("vxlab-*.whl")

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel))
    # The pinned dependencies come from the project's venv (no download): a plain path, so its
    # .pth files, among them the editable install of the checkout, are not run.
    site = run(str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = json.loads(run(str(python), "-I", "-c", RENDER, cwd=elsewhere))

    assert Path(out["lab"]).is_relative_to(venv) and Path(out["default"]).is_relative_to(venv)
    assert out["render"]["vagrant"]["routerVM"]["/etc/network/interfaces"][0].strip()
    assert out["render"] == rendered_here()
