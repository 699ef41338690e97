"""`python -m render_kernels compare`: exit codes, text and JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rk_testimages import structured

import render_kernels as rk
from render_kernels.cli import main

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), RENDER_KERNELS_BACKEND="numpy")
    return subprocess.run(
        [sys.executable, "-m", "render_kernels", "compare", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    ref = structured(48, 64, seed=31)
    paths = {"ref": d / "ref.png", "same": d / "same.png", "cheat": d / "cheat.png", "small": d / "small.png"}
    rk.save_png(paths["ref"], ref)
    rk.save_png(paths["same"], ref)
    rk.save_png(paths["cheat"], ref * 0.5)
    rk.save_png(paths["small"], ref[:40])
    paths["crop"] = d / "crop.png"
    rk.save_png(paths["crop"], ref[8:40, 16:48])
    paths["bad"] = d / "bad.png"
    paths["bad"].write_bytes(b"definitely not an image")
    paths["dir"] = d
    return paths


def test_pass_exit_0_with_json(images):
    proc = run_cli(str(images["same"]), str(images["ref"]), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["verdict"] == "pass" and doc["passed"] is True and doc["reasons"] == []
    assert doc["metrics"]["psnr"] is None  # identical: infinite PSNR is null in JSON
    assert doc["metrics"]["ssim"] == 1.0 and doc["metrics"]["shape"] == [48, 64, 3]


def test_fail_exit_1_with_text_output(images):
    proc = run_cli(str(images["cheat"]), str(images["ref"]))
    assert proc.returncode == 1, proc.stderr
    assert "verdict         fail" in proc.stdout and "ssim" in proc.stdout


@pytest.mark.parametrize(
    "which, message",
    [("missing", "no such image file"), ("small", "size mismatch"), ("bad", "cannot decode")],
)
def test_bad_input_exit_2(images, which, message):
    cand = str(images["dir"] / "missing.png") if which == "missing" else str(images[which])
    proc = run_cli(cand, str(images["ref"]))
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stdout == ""


def test_region_and_heatmap_in_process(images, capsys):
    heat = images["dir"] / "heat.png"
    code = main(
        [
            "compare",
            str(images["crop"]),
            str(images["ref"]),
            "--region",
            "16,8,32,32",
            "--json",
            "--heatmap",
            str(heat),
            "--backend",
            "numpy",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["region"] == [16, 8, 32, 32] and doc["metrics"]["shape"] == [32, 32, 3]
    assert rk.load_image(heat).shape == (32, 32, 3)


def test_malformed_region_is_a_usage_error(images, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare", str(images["same"]), str(images["ref"]), "--region", "1,2,3"])
    assert exc.value.code == 2
    assert "X,Y,W,H" in capsys.readouterr().err


def test_region_outside_image_exit_2(images, capsys):
    code = main(["compare", str(images["same"]), str(images["ref"]), "--region", "60,0,20,20"])
    assert code == 2 and "exceeds" in capsys.readouterr().err


def test_heatmap_values_reflect_errors(images, capsys):
    heat = images["dir"] / "cheat_heat.png"
    assert main(["compare", str(images["cheat"]), str(images["ref"]), "--heatmap", str(heat)]) == 1
    capsys.readouterr()
    assert np.asarray(rk.load_image(heat)).mean() > 0.2  # large errors everywhere -> bright map
