"""Shared fixtures. Nothing here downloads anything."""

from __future__ import annotations

import json
import os

# Test workloads are tiny: one thread is fastest, and on a shared 2-core box the BLAS/torch thread
# pools spin against other processes (a 96x96 restore took 1.5 s on 2 threads, 0.03 s on 1; the
# LR-file check 4.7 s instead of 0.6 s). OpenBLAS reads this when numpy loads, hence before imports.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_DATA = SHARED / "data"

requires_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared data not available")


def load_script(name: str):  # noqa: ANN201 - the loaded module
    """A module from scripts/ (not a package), loaded by path."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

# the bundled model names and what they serve (mirrors weights/manifest.json)
TINY_MODELS = {
    "rim-gray-denoise": (["denoise"], 1),
    "rim-rgb-denoise": (["denoise"], 3),
    "rim-rgb-deblur": (["deblur"], 3),
    "rim-sr": (["superres"], 3),
    "rim-3task": (["cs", "denoise"], 1),
}


@pytest.fixture(autouse=True)
def _own_user_models_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """`rim export` writes to the user's models folder by default: never the real one in tests."""
    monkeypatch.setenv("RIM_USER_MODELS", str(tmp_path_factory.mktemp("user-models")))


@pytest.fixture(autouse=True)
def _no_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """`auto` precision (rim's CLI, `rim train`) is bf16 only on a CPU with native bf16: the suite
    runs as on a CPU without it, the same on every machine; a test of the bf16 path says so."""
    import rimcli.inference

    monkeypatch.setattr(rimcli.inference, "native_bf16", lambda: False)


@pytest.fixture(scope="session")
def tiny_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder with tiny untrained RIMs under the bundled names (fast, deterministic)."""
    from rimcli.model import RIM, RIMConfig
    from rimcli.weights import ModelEntry, save_model, write_manifest

    folder = tmp_path_factory.mktemp("weights")
    entries = {}
    for i, (name, (tasks, ch)) in enumerate(TINY_MODELS.items()):
        torch.manual_seed(i)
        model = RIM(RIMConfig(channels=ch, hidden=8))
        digest = save_model(model, folder / f"{name}.safetensors")
        entries[name] = ModelEntry(name=name, file=f"{name}.safetensors", sha256=digest, tasks=tasks, channels=ch,
                                   config=model.config.to_dict(), default_steps=3, description="tiny test model")
    write_manifest(entries, folder)
    json.loads((folder / "manifest.json").read_text())
    return folder


@pytest.fixture
def tiny_weights(tiny_weights_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point rimcli at the tiny weights for one test."""
    monkeypatch.setenv("RIM_WEIGHTS", str(tiny_weights_dir))
    return tiny_weights_dir


@pytest.fixture(autouse=True)
def _no_auto_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """`rim train` compiles the cell on a CPU with a C++ compiler by default, which takes seconds per
    run: the suite trains eagerly unless a test asks for compile (or patches this back)."""
    import rimcli.training

    monkeypatch.setattr(rimcli.training, "cpu_compiler", lambda: False)
