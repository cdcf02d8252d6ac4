"""Weights: safetensors + manifest, sha256-checked, no pickle, clear errors naming the file."""

from __future__ import annotations

import json
import pickle
import shutil
import struct
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_MODELS
from rimcli import api, weights
from rimcli.inference import unroll
from rimcli.model import RIM, RIMConfig
from rimcli.operators import Denoise
from rimcli.weights import ModelEntry, WeightsError, default_model, load_file, read_manifest, resolve, save_model


def _outputs(model: RIM) -> torch.Tensor:
    y = torch.rand(1, model.config.channels, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return unroll(model, y, Denoise(), 0.1, 2)[-1]


@pytest.fixture
def weights_copy(tiny_weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the tiny weights folder, safe to damage."""
    folder = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, folder)
    monkeypatch.setenv("RIM_WEIGHTS", str(folder))
    return folder


@pytest.mark.parametrize("arch", ["rim", "paper"])
def test_save_and_load_round_trip_gives_identical_outputs(arch: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = RIM(RIMConfig(channels=3, hidden=8, arch=arch, eps_init=3e-3)).eval()
    path = tmp_path / "m.safetensors"
    digest = save_model(model, path, metadata={"steps": 8})
    loaded = load_file(path, digest)
    assert loaded.config == model.config
    assert not loaded.training
    torch.testing.assert_close(_outputs(loaded), _outputs(model), rtol=0, atol=0)
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_safetensors_file_holds_no_pickle(tmp_path: Path) -> None:
    """The format is an 8-byte header length, a JSON header and raw tensor bytes."""
    path = tmp_path / "m.safetensors"
    save_model(RIM(RIMConfig(hidden=8)), path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    assert json.loads(header["__metadata__"]["config"]) == RIMConfig(hidden=8).to_dict()
    assert b"\x80\x04" not in raw[:2] and not raw.startswith(b"PK")  # neither a pickle nor a torch zip


def test_loading_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pickle dressed as weights must fail to load without running its payload."""
    ran = []

    class Payload:
        def __reduce__(self):
            return (ran.append, ("executed",))

    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"conv.weight": Payload()}))

    def refuse(*args, **kwargs):
        raise AssertionError("weights loading must not use pickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    with pytest.raises(WeightsError, match="evil.safetensors could not be read"):
        load_file(evil)
    assert ran == []
    good = tmp_path / "good.safetensors"
    save_model(RIM(RIMConfig(hidden=8)), good)
    load_file(good)  # the real path works with pickle disabled


def test_resolve_by_name_checks_the_manifest_digest(tiny_weights: Path) -> None:
    model, entry = resolve("rim-sr")
    assert entry is not None and entry.name == "rim-sr" and entry.tasks == ["superres"]
    assert model.config.channels == 3 and model.config.to_dict() == entry.config


def test_sha256_mismatch_names_the_file(weights_copy: Path) -> None:
    path = weights_copy / "rim-sr.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # still a valid safetensors file: only the digest catches it
    path.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match=r"rim-sr\.safetensors is corrupt \(sha256 mismatch\)"):
        resolve("rim-sr")


def test_missing_file_names_the_file(weights_copy: Path) -> None:
    (weights_copy / "rim-gray-denoise.safetensors").unlink()
    with pytest.raises(WeightsError, match=r"rim-gray-denoise\.safetensors is missing"):
        resolve("rim-gray-denoise")


def test_missing_path_is_reported_as_a_missing_file(tmp_path: Path, tiny_weights: Path) -> None:
    with pytest.raises(WeightsError, match=r"nope\.safetensors is missing"):
        resolve(str(tmp_path / "nope.safetensors"))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_file_raises_weights_error_naming_it(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "m.safetensors"
    save_model(RIM(RIMConfig(hidden=8)), path)
    raw = path.read_bytes()
    path.write_bytes({"truncated": raw[: len(raw) // 2], "garbage": b"\x00\xff" * 500, "empty": b""}[damage])
    with pytest.raises(WeightsError, match=r"m\.safetensors could not be read"):
        load_file(path)


def test_config_that_does_not_fit_the_tensors_raises(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_model(RIM(RIMConfig(hidden=8)), path)
    from safetensors.torch import load_file as st_load
    from safetensors.torch import save_file

    save_file(st_load(str(path)), str(path), metadata={"config": json.dumps(RIMConfig(hidden=16).to_dict())})
    with pytest.raises(WeightsError, match="could not be read"):
        load_file(path)


def test_unknown_config_key_in_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    model = RIM(RIMConfig(hidden=8))
    save_model(model, path)
    from safetensors.torch import load_file as st_load
    from safetensors.torch import save_file

    save_file(st_load(str(path)), str(path), metadata={"config": json.dumps({**model.config.to_dict(), "depth": 3})})
    with pytest.raises(WeightsError, match="unknown model config keys: depth"):
        load_file(path)


def test_unknown_model_name_lists_the_bundled_models(tiny_weights: Path) -> None:
    names = ", ".join(sorted(TINY_MODELS))
    with pytest.raises(WeightsError, match=f"unknown model 'rim-huge'; bundled models: {names}"):
        resolve("rim-huge")


@pytest.mark.parametrize(
    ("task", "channels", "expected"),
    [
        ("denoise", 1, "rim-gray-denoise"),
        ("denoise", 3, "rim-rgb-denoise"),
        ("deblur", 3, "rim-rgb-deblur"),
        ("deblur", 1, "rim-rgb-deblur"),  # no gray deblurring model: the RGB one serves
        ("superres", 3, "rim-sr"),
        ("superres", 1, "rim-sr"),
        ("cs", 1, "rim-3task"),
    ],
)
def test_default_model_prefers_task_then_channels(tiny_weights: Path, task: str, channels: int, expected: str) -> None:
    assert default_model(task, channels) == expected


def test_default_model_for_an_unserved_task_raises(tiny_weights: Path) -> None:
    with pytest.raises(WeightsError, match="no bundled model for task 'inpaint'"):
        default_model("inpaint", 1)


def test_manifest_entries_carry_the_provenance_fields(tiny_weights: Path) -> None:
    entry = read_manifest()["rim-3task"]
    assert len(entry.sha256) == 64 and entry.file == "rim-3task.safetensors"
    assert entry.tasks == ["cs", "denoise"] and entry.channels == 1
    assert RIMConfig.from_dict(entry.config) == RIMConfig(hidden=8)
    assert ModelEntry.from_dict(entry.to_dict()) == entry
    assert {"training", "metrics", "description", "default_steps"} <= set(entry.to_dict())


def test_missing_manifest_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIM_WEIGHTS", str(tmp_path))
    assert weights.weights_dir() == tmp_path
    with pytest.raises(WeightsError, match="no weights manifest at .*RIM_WEIGHTS"):
        resolve("rim-sr")


@pytest.mark.parametrize("text", ["{not json", '{"models": [{"name": "x"}]}', '{"models": [{"name": "x", "colour": 1}]}'])
def test_corrupt_manifest_raises_weights_error(weights_copy: Path, text: str) -> None:
    (weights_copy / "manifest.json").write_text(text)
    with pytest.raises(WeightsError, match="corrupt weights manifest"):
        read_manifest()


@pytest.mark.parametrize("metadata, steps", [({"default_steps": 4, "tasks": ["denoise"]}, 4), ({"default_steps": 2}, 2),
                                             ({"training": {"steps": 6}}, 6), ({}, None)])
def test_recorded_steps_of_a_file(tmp_path: Path, metadata: dict, steps: int | None) -> None:
    """The one lookup of a model's inference steps: default_steps, else the training horizon."""
    path = tmp_path / "m.safetensors"
    save_model(RIM(RIMConfig(channels=1, hidden=8)), path, metadata)
    _, entry = resolve(str(path))
    assert weights.recorded_steps(str(path), entry) == steps
    api._CACHE.clear()  # the API runs a file by path with the same steps as `rim benchmark`
    assert api.load_model(str(path)).default_steps == (steps or api.DEFAULT_STEPS)


def test_recorded_steps_of_a_bundled_model(tiny_weights: Path) -> None:
    _, entry = resolve("rim-gray-denoise")
    assert weights.recorded_steps("rim-gray-denoise", entry) == entry.default_steps == 3


def test_set_default_steps_rewrites_the_file_and_its_entry(weights_copy: Path) -> None:
    """scripts/set_default_steps.py: the file and the manifest agree on the new steps and sha256,
    the weights are untouched, and figures measured at the old steps are dropped."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from set_default_steps import set_default_steps

    entries = read_manifest(weights_copy)
    entries["rim-sr"].metrics = {"validation": {"psnr_at_horizon": 30.0}, "benchmarks": {"set5": {}}, "headline": "x"}
    weights.write_manifest(entries, weights_copy)
    before = _outputs(resolve("rim-sr")[0])
    entry = set_default_steps(weights_copy, "rim-sr", 2, "two steps")
    after = read_manifest(weights_copy)["rim-sr"]
    assert entry.sha256 == weights.sha256(weights_copy / "rim-sr.safetensors") == after.sha256
    meta = weights.file_metadata(weights_copy / "rim-sr.safetensors")
    assert (meta["default_steps"], meta["description"], after.default_steps) == (2, "two steps", 2)
    assert after.metrics == {"validation": {"psnr_at_horizon": 30.0}}
    model, resolved = resolve("rim-sr")
    torch.testing.assert_close(_outputs(model), before, rtol=0, atol=0)
    assert weights.recorded_steps("rim-sr", resolved) == 2
