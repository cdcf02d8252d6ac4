"""`rimcli.tasks`: each task's facts written once, and the API, benchmark and training using them."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

import rimcli
from rimcli import api, benchmark, datasets, metrics, operators, tasks, training
from rimcli.errors import InputError

# --------------------------------------------------------------------------- operators


def test_operator_per_task() -> None:
    assert isinstance(tasks.denoise_operator(), operators.Denoise)
    sr = tasks.superres_operator(3)
    assert isinstance(sr, operators.Downsample) and sr.scale == 3
    blur = tasks.deblur_operator(1.5)
    assert torch.equal(blur.kernel, operators.gaussian_kernel(1.5)) and blur.describe()["blur_sigma"] == 1.5
    cs = tasks.cs_operator("binary", 0.25, 7, batch=2)
    assert (cs.kind, cs.ratio, cs.seed, cs.patch) == ("binary", 0.25, 7, tasks.CS_BLOCK)
    assert cs.matrix.shape == (2, 256, 1024)
    assert torch.equal(cs.matrix, operators.RandomProjection("binary", 0.25, seed=7, batch=2).matrix)


def test_training_blur_kernel_is_sized_for_the_widest_blur() -> None:
    """Every batch of a run has one kernel size (+-3 std of the widest blur), whatever width it drew."""
    op = tasks.deblur_operator(1.0, widest=3.0)
    assert op.kernel.shape == (19, 19) and not hasattr(op, "blur_sigma")
    assert torch.equal(op.kernel, operators.gaussian_kernel(1.0, size=19))
    cfg = training.TrainConfig(task="deblur", blur_range=[0.5, 3.0])
    assert training.sample_operator(cfg, "deblur", 2, torch.Generator().manual_seed(0)).kernel.shape == (19, 19)


def test_training_draws_each_blur_family_in_one_kernel_size() -> None:
    """--blur-kinds: one family per batch, every kernel in the widest Gaussian's size; a
    Gaussian-only run draws exactly what it drew before the option existed."""
    g = torch.Generator().manual_seed(0)
    cfg = training.TrainConfig(task="deblur", blur_range=[0.5, 3.0], blur_kinds=["gaussian", "motion", "defocus"])
    kernels = [training.sample_operator(cfg, "deblur", 2, g).kernel for _ in range(30)]
    assert {tuple(k.shape) for k in kernels} == {(19, 19)}
    def family(k: torch.Tensor) -> str:  # shake paths are not symmetric; discs have a flat top, Gaussians a peak
        if not (torch.allclose(k, k.T) and torch.allclose(k, k.flip(0))):
            return "motion"
        return "defocus" if int((k == k.max()).sum()) > 1 else "gaussian"

    drawn = [family(k) for k in kernels]
    assert {f: drawn.count(f) for f in cfg.blur_kinds} == {f: drawn.count(f) for f in set(drawn)}
    assert min(drawn.count(f) for f in cfg.blur_kinds) >= 5
    disc = tasks.random_blur_operator("defocus", 1.5, 3.0, g).kernel
    assert torch.equal(disc, operators.defocus_kernel(3.0, 19))
    assert torch.equal(tasks.random_blur_operator("gaussian", 1.5, 3.0, g).kernel, operators.gaussian_kernel(1.5, 19))
    with pytest.raises(InputError, match="blur kind"):
        tasks.random_blur_operator("box", 1.5, 3.0, g)
    old, new = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    width = float(training._uniform(0.5, 3.0, 1, old))  # the width, and nothing else, as before
    op = training.sample_operator(training.TrainConfig(task="deblur"), "deblur", 2, new)
    assert torch.equal(op.kernel, tasks.deblur_operator(width, widest=3.0).kernel)
    assert torch.equal(old.get_state(), new.get_state())
    with pytest.raises(training.TrainError, match="blur_kinds"):
        training.TrainConfig(task="deblur", blur_kinds=["gaussian", "box"]).validate()


def test_kernel_operator_takes_an_array_or_a_file(tmp_path: Path) -> None:
    k = np.array([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]])
    assert torch.equal(tasks.kernel_operator(k).kernel, torch.as_tensor(k, dtype=torch.float32))
    np.save(tmp_path / "k.npy", k)
    assert torch.allclose(tasks.kernel_operator(tmp_path / "k.npy").kernel, torch.as_tensor(k / 8, dtype=torch.float32))


def test_api_problem_builds_the_tasks_operators() -> None:
    assert isinstance(api.Problem("denoise").operator(), operators.Denoise)
    assert api.Problem("superres", scale=4).operator().scale == 4
    assert torch.equal(api.Problem("deblur", blur_sigma=2.0).operator().kernel, tasks.deblur_operator(2.0).kernel)
    op = api.Problem("cs", ensemble="fourier", ratio=0.5, seed=3).operator()
    assert torch.equal(op.matrix, tasks.cs_operator("fourier", 0.5, 3).matrix) and op.patch == tasks.CS_BLOCK


def test_ensembles_match_the_operators() -> None:
    assert tasks.ENSEMBLES == operators.ENSEMBLES == api.ENSEMBLES


# --------------------------------------------------------------------------- sigma and scales


def test_sigma_conventions() -> None:
    assert tasks.DEFAULT_SIGMA == {"denoise": 25.0, "superres": 0.0, "deblur": 1.0, "cs": 0.0}
    assert api.DEFAULT_SIGMA is tasks.DEFAULT_SIGMA and training.DEFAULT_SIGMA is tasks.TRAIN_SIGMA_RANGE
    for name in tasks.TASKS:  # the one-call API's defaults are the same numbers
        assert inspect.signature(getattr(rimcli, name)).parameters["sigma"].default == tasks.DEFAULT_SIGMA[name]
        assert training.TrainConfig(task=name).sigma_for(name) == tasks.TRAIN_SIGMA_RANGE[name]
    assert tasks.TRAIN_SIGMA_RANGE["denoise"] == (0.0, 75.0)
    assert benchmark.DEFAULT_SIGMAS == tasks.DENOISE_TEST_SIGMAS == (15.0, 25.0, 50.0)
    labels = [label for label, _ in training.validation_set(training.TrainConfig(task="denoise"))]
    assert labels == ["denoise_s15", "denoise_s25", "denoise_s50"]  # the run logs' keys
    clipped = [label for label, _ in training.validation_set(training.TrainConfig(task="denoise", clip_fraction=0.5))]
    assert clipped == labels + ["denoise_s15_8bit", "denoise_s25_8bit", "denoise_s50_8bit"]
    blurred = [label for label, _ in training.validation_set(training.TrainConfig(task="deblur", clip_fraction=0.5))]
    assert blurred == ["deblur_b1.0", "deblur_b2.0", "deblur_b1.0_8bit", "deblur_b2.0_8bit"]
    kinds = training.TrainConfig(task="deblur", clip_fraction=0.5, blur_kinds=["gaussian", "motion", "defocus"])
    assert [label for label, _ in training.validation_set(kinds)] == [*blurred, "deblur_motion", "deblur_defocus"]


def test_scales_inference_and_training() -> None:
    assert api.SCALES == datasets.SR_SCALES == tasks.SR_SCALES == (2, 3, 4)
    assert training.TrainConfig().scales == [2, 3, 4]
    training.TrainConfig(task="superres", scales=[8], patch=48).validate()  # training goes wider
    with pytest.raises(InputError, match="choose 2, 3 or 4"):
        api.Problem("superres", scale=8).check()
    with pytest.raises(training.TrainError, match="scales"):
        training.TrainConfig(task="superres", scales=[7], patch=49 * 8).validate()


# --------------------------------------------------------------------------- simulation


def test_sr_crop_to_whole_lr_pixels() -> None:
    x = np.zeros((25, 28, 3))
    assert tasks.sr_crop(x, 3).shape == (24, 27, 3) and tasks.sr_crop_size(25, 28, 3) == (24, 27)
    assert api.output_shape(np.zeros((25, 28, 3), np.uint8), api.Problem("superres", scale=3, simulate=True)) == (24, 27, 3)
    with pytest.raises(InputError, match="smaller than the scale 4"):
        tasks.sr_crop(np.zeros((3, 9, 1)), 4)


def test_cs_pads_to_whole_blocks_by_reflection() -> None:
    x = np.random.default_rng(0).random((40, 70, 1))
    p = tasks.pad_to_blocks(x)
    assert p.shape == (64, 96, 1)
    np.testing.assert_array_equal(p[:40, :70], x)
    np.testing.assert_array_equal(p[40, :70], x[39])  # symmetric: the edge row repeats, then the image mirrors
    np.testing.assert_array_equal(p[:40, 70], x[:, 69])
    assert tasks.pad_to_blocks(np.zeros((64, 32, 3))).shape == (64, 32, 3)


def test_crop_multiple() -> None:
    assert tasks.crop_multiple(["denoise"], [2, 3, 4]) == 1
    assert tasks.crop_multiple(["superres"], [2, 3, 4]) == 12
    assert tasks.crop_multiple(["superres", "cs"], [2, 3]) == 96
    assert tasks.crop_multiple(["cs", "deblur"], [5]) == 32


def test_simulated_lr_is_8_bit() -> None:
    y = torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    r = tasks.stored_measurement("superres", y)
    assert torch.equal(r, torch.round(y * 255.0) / 255.0)
    assert all(tasks.stored_measurement(t, y) is y for t in ("denoise", "deblur", "cs"))
    cfg = training.TrainConfig(task="superres", patch=24, scales=[2])
    _, y, _ = training.corrupt(cfg, "superres", torch.rand(2, 1, 24, 24), torch.Generator().manual_seed(0))
    assert torch.equal(torch.round(y * 255.0) / 255.0, y)  # already on the 8-bit grid


# --------------------------------------------------------------------------- channels


def test_channel_fitting_round_trips() -> None:
    colour = torch.rand(1, 3, 6, 5)
    batch, back = tasks.fit_channels(colour, 1)  # gray model: one channel per batch item
    assert batch.shape == (3, 1, 6, 5) and batch.is_contiguous()
    assert torch.equal(back(batch), colour)
    gray = torch.rand(1, 1, 6, 5)
    batch, back = tasks.fit_channels(gray, 3)  # RGB model: replicated, then averaged
    assert batch.shape == (1, 3, 6, 5) and torch.equal(batch[:, 2], gray[:, 0])
    assert torch.allclose(back(batch), gray)
    same, back = tasks.fit_channels(colour, 3)
    assert same is colour and back(same) is colour
    blocks = torch.rand(1, 1, 16, 2, 2)  # a cs measurement (B, C, m, h, w) fits the same way
    assert tasks.fit_channels(blocks, 3)[0].shape == (1, 3, 16, 2, 2)


def test_benchmark_fits_channels_as_the_api_does() -> None:
    img = np.random.default_rng(1).random((6, 5, 3))
    t, back = benchmark._to_batch(img, 1)
    assert t.shape == (3, 1, 6, 5)
    np.testing.assert_allclose(benchmark._from_batch(back(t)), img.astype(np.float32))
    t, back = benchmark._to_batch(img[..., 0], 3)
    assert t.shape == (1, 3, 6, 5) and benchmark._from_batch(back(t)).shape == (6, 5)


# --------------------------------------------------------------------------- SR scoring


def test_sr_score_is_y_shave_psnr() -> None:
    rng = np.random.default_rng(2)
    truth, out = rng.random((20, 22, 3)), rng.random((20, 22, 3))
    ya = metrics.shave(metrics.rgb2y(out * 255.0), 3)
    yb = metrics.shave(metrics.rgb2y(truth * 255.0), 3)
    expected = metrics.psnr(ya, yb)
    scored = api._score(out, truth, api.Problem("superres", scale=3))
    assert scored["psnr"] == expected == metrics.sr_psnr(out * 255.0, truth * 255.0, 3)
    assert scored["ssim"] == metrics.ssim(ya, yb) == metrics.sr_metrics(out * 255.0, truth * 255.0, 3)[1]
    assert benchmark.sr_psnr is metrics.sr_psnr


def test_sr_score_of_gray_images_skips_the_colour_transform() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random((16, 16)) * 255, rng.random((16, 16)) * 255
    assert metrics.sr_y(a, 2).shape == (12, 12)
    np.testing.assert_array_equal(metrics.sr_y(a[..., None], 2), metrics.sr_y(a, 2))
    assert metrics.sr_psnr(a, b, 2) == metrics.psnr(a[2:-2, 2:-2], b[2:-2, 2:-2])


# --------------------------------------------------------------------------- layering


def test_tasks_imports_no_upper_layer() -> None:
    """tasks sits below api, benchmark and training: it may use operators, metrics, resize, errors, io."""
    tree = ast.parse(Path(tasks.__file__).read_text())
    names = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}
    assert names <= {"operators", "metrics", "resize", "errors", "io"}, names


def test_a_task_named_twice_weighs_the_mix_but_is_validated_once() -> None:
    """Each batch draws one entry of `tasks()`, so naming denoise twice gives it 2/3 of the batches
    of a 3task,denoise,denoise run; its held-out settings are those of 3task,denoise."""
    twice = training.TrainConfig(task="3task,denoise,denoise", clip_fraction=0.5, patch=64)
    once = training.TrainConfig(task="3task,denoise", clip_fraction=0.5)
    twice.validate()
    assert twice.tasks() == ["cs", "denoise", "denoise"]
    assert training.validation_set(twice) == training.validation_set(once)


def test_self_ensemble_tasks_are_those_whose_operators_flip() -> None:
    import typer.main

    from rimcli.cli import _register, app

    _register()
    made = {"denoise": tasks.denoise_operator(), "superres": tasks.superres_operator(2),
            "deblur": tasks.deblur_operator(1.0), "cs": tasks.cs_operator("gaussian", 0.25, seed=0)}
    assert sorted(made) == sorted(tasks.TASKS)
    commands = typer.main.get_command(app).commands
    for name, op in made.items():
        flips = op.dihedral(1) is not None
        assert flips == (name in tasks.SELF_ENSEMBLE_TASKS), name
        offered = any(p.name == "self_ensemble" for p in commands[name].params)
        assert offered == flips, name
