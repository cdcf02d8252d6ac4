"""Issue 13, one home per fact: every training setting is a `rim train` flag named after its
TrainConfig field, and training reads images with the project's one reader (16 bits kept)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import typer.main
from PIL import Image
from typer.testing import CliRunner

import rimcli.cli
from rimcli import training
from rimcli.cli.train import RUN_OPTIONS
from rimcli.io import write_image
from rimcli.training import PatchSampler, TrainConfig, load_images

rimcli.cli._register()
FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.toml"))


def _train_command():  # noqa: ANN202 - a click command
    return typer.main.get_command(rimcli.cli.app).commands["train"]


def test_every_train_setting_has_a_flag_named_after_it_and_every_flag_a_setting() -> None:
    params = {p.name: p for p in _train_command().params}
    flags = {o for p in params.values() for o in (*p.opts, *p.secondary_opts)}
    for name in sorted(FIELDS):
        assert "--" + name.replace("_", "-") in flags, f"TrainConfig.{name} has no rim train flag"
        assert params[name].help, f"--{name.replace('_', '-')} has no help"
    assert set(params) - FIELDS == set(RUN_OPTIONS)


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> dict:
    """What `rim train` would train: the TrainConfig and keywords it passes (nothing runs)."""
    seen: dict = {}
    monkeypatch.setattr(training, "train", lambda cfg, **kw: seen.update(cfg=cfg, **kw))
    return seen


def _rim_train(*args: object) -> None:
    r = CliRunner().invoke(rimcli.cli.app, ["train", "-q", *(str(a) for a in args)])
    assert r.exit_code == 0, r.output


def test_flags_set_their_fields_over_a_config_file(trained: dict, tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text('warmup = 7\nhidden = 16\nval_crop = 32\n')
    _rim_train("--config", recipe, "--data", "imgs", "-o", "run", "--warmup", 50, "--grad-clip", 0.5,
               "--log-every", 7, "--val-images", 3, "--compile", "--scales", "2,4", "--ratios", "1/2,1/4",
               "--sigma-range", "0:50", "--blur-range", "1:2", "--blur-kinds", "gaussian, motion", "--channels-last",
               "--sigma-input", "--low-sigma", 0.1, "--init-from", "w.safetensors", "--time-limit", 5)
    cfg = trained["cfg"]
    assert (cfg.warmup, cfg.hidden, cfg.val_crop, cfg.grad_clip, cfg.log_every, cfg.val_images) == (50, 16, 32, 0.5, 7, 3)
    assert cfg.compile and cfg.channels_last and cfg.sigma_input and cfg.low_sigma == 0.1
    assert (cfg.scales, cfg.ratios, cfg.sigma_range, cfg.blur_range) == ([2, 4], [0.5, 0.25], [0, 50], [1, 2])
    assert cfg.blur_kinds == ["gaussian", "motion"]
    assert (cfg.data, cfg.out, cfg.init_from, trained["time_limit"]) == ("imgs", "run", "w.safetensors", 5)


def test_out_is_still_an_alias_of_output(trained: dict) -> None:
    _rim_train("--data", "imgs", "--out", "old")
    assert trained["cfg"].out == "old"


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_recipes_load_through_the_cli(trained: dict, recipe: Path) -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+, as --config TOML itself
    _rim_train("--config", recipe, "--data", "imgs")
    assert trained["cfg"] == TrainConfig.from_dict({**tomllib.loads(recipe.read_text()), "data": "imgs"})


# ---------------------------------------------------------------- images as training loads them

RAMP = (np.arange(40 * 48, dtype=np.uint32).reshape(40, 48) * 31 + 5).astype(np.uint16)  # steps of 31/65535


def _not_8_bit(x: torch.Tensor) -> bool:
    return float((x * 255 - torch.round(x * 255)).abs().max()) > 0.01


def test_training_keeps_16_bit_precision(tmp_path: Path) -> None:
    rgb = np.dstack([RAMP, RAMP[::-1], 65535 - RAMP])
    gray_file, rgb_file = write_image(tmp_path / "g.png", RAMP), write_image(tmp_path / "c.png", rgb)
    gray, colour = load_images([gray_file, rgb_file], channels=1)
    assert torch.equal(gray[0], torch.from_numpy(RAMP / np.float32(65535)))
    luma = (rgb / 65535.0) @ [0.299, 0.587, 0.114]
    assert np.abs(colour[0].numpy() - luma).max() < 1e-5
    (as_rgb,) = load_images([rgb_file], channels=3)
    assert torch.equal(as_rgb, torch.from_numpy(rgb.transpose(2, 0, 1) / np.float32(65535)))
    x = PatchSampler([gray, colour], 32, torch.Generator().manual_seed(0)).batch(4)
    assert x.dtype == torch.float32 and _not_8_bit(x)


def test_8_bit_images_load_as_before(tmp_path: Path) -> None:
    """uint8 in memory, gray from colour exactly as PIL's 'L' (the data stream of old runs)."""
    rgb = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "g.png")
    (gray,) = load_images([tmp_path / "c.png"], channels=1)
    assert gray.dtype == torch.uint8 and torch.equal(gray[0], torch.from_numpy(np.array(Image.fromarray(rgb).convert("L"))))
    (same,) = load_images([tmp_path / "g.png"], channels=1)
    assert same.dtype == torch.uint8 and torch.equal(same[0], torch.from_numpy(rgb[..., 0].copy()))
    (rep,) = load_images([tmp_path / "g.png"], channels=3)
    assert torch.equal(rep, torch.from_numpy(np.repeat(rgb[None, ..., 0], 3, axis=0)))
    x = PatchSampler([gray], 32, torch.Generator().manual_seed(0)).batch(2)
    assert not _not_8_bit(x)


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_recipes_fine_tune_a_bundled_file_they_can_start_from(recipe: Path) -> None:
    """A recipe that starts from bundled weights names a bundled model whose weights its cell takes
    (the same cell, or a wider one: model.transfer_weights): the GPU run would otherwise fail on
    the device machine, after its start-up time was spent."""
    tomllib = pytest.importorskip("tomllib")
    from rimcli.model import RIM, transfer_weights
    from rimcli.training import init_file
    from rimcli.weights import load_file

    cfg = TrainConfig.from_dict({**tomllib.loads(recipe.read_text()), "data": "imgs"})
    if cfg.init_from is None:
        pytest.skip("trains from random weights")
    bundled = load_file(init_file(cfg.init_from))
    cell = cfg.model_config()
    assert (bundled.config.channels, bundled.config.arch) == (cell.channels, cell.arch)
    transfer_weights(bundled, RIM(cell))  # raises if the recipe's cell cannot start from it
