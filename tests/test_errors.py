"""One error base class: every user-facing error is a `RimError`, which the CLI prints as one line
with exit 2; anything else is a bug and shows its traceback."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import rimcli
import rimcli.cli
from rimcli import baselines, benchmark, datasets, inference, io, training, weights
from rimcli.cli import common
from rimcli.cli import examples as cli_examples
from rimcli.errors import InputError, RestoreError, RimError, os_reason

rimcli.cli._register()

#: each error class and the base it had before RimError (kept, so `except ValueError` still works)
ERRORS = [
    (InputError, ValueError),
    (RestoreError, RuntimeError),
    (io.ImageError, ValueError),
    (weights.WeightsError, RuntimeError),
    (training.TrainError, ValueError),
    (inference.DeviceError, ValueError),
    (datasets.DatasetError, FileNotFoundError),
    (benchmark.BenchmarkError, ValueError),
    (baselines.MissingBaseline, ImportError),
    (common.CLIError, Exception),
]


def _invoke(*args: str):  # noqa: ANN202 - a click Result
    return CliRunner().invoke(rimcli.cli.app, list(args))


@pytest.mark.parametrize("cls, old_base", ERRORS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_every_error_class_is_a_rim_error_with_its_old_base(cls: type, old_base: type) -> None:
    assert issubclass(cls, RimError) and issubclass(cls, old_base)
    assert rimcli.RimError is RimError


def test_no_error_class_in_the_package_is_left_out() -> None:
    """Every exception class defined in rimcli is a RimError (a new one must choose a side)."""
    found = set()
    for mod in pkgutil.walk_packages(rimcli.__path__, "rimcli."):
        if mod.name == "rimcli.__main__":
            continue
        module = importlib.import_module(mod.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == mod.name:
                found.add(obj)
    assert found == {RimError} | {cls for cls, _ in ERRORS}


@pytest.mark.parametrize("cls", [cls for cls, _ in ERRORS], ids=lambda c: c.__name__)
def test_rim_errors_are_one_line_exit_2(cls: type, monkeypatch: pytest.MonkeyPatch) -> None:
    def user_error(name: str) -> Path:
        raise cls("bad input: the first line\nand a second line nobody sees")

    monkeypatch.setattr(cli_examples, "example_path", user_error)
    result = _invoke("example", "camera")
    assert result.exit_code == 2, result.output
    assert result.stderr == "error: bad input: the first line\n"
    assert not isinstance(result.exception, RimError)  # handled, not raised


@pytest.mark.parametrize("exc", [ValueError, RuntimeError, TypeError, KeyError])
def test_a_bug_is_not_disguised_as_a_user_error(exc: type, monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(name: str) -> Path:
        raise exc("an internal bug")

    monkeypatch.setattr(cli_examples, "example_path", bug)
    result = _invoke("example", "camera")
    assert isinstance(result.exception, exc) and result.exit_code == 1
    assert "error:" not in result.stderr


def test_a_bug_in_one_file_of_a_batch_stops_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-file failures are the user's errors only; a bug in the restoration is not 'one bad file'."""
    import rimcli.api

    def bug(*args: object, **kwargs: object) -> None:
        raise RuntimeError("an internal bug")

    monkeypatch.chdir(tmp_path)
    io.write_image(tmp_path / "a.png", np.zeros((16, 16), np.uint8))
    monkeypatch.setattr(rimcli.api, "run", bug)
    result = _invoke("denoise", "a.png", "--steps", "1", "-o", "out", "-q")
    assert isinstance(result.exception, RuntimeError) and result.exit_code == 1
    assert "error:" not in result.stderr


@pytest.mark.parametrize("error", ["ValueError", "OSError"])  # OSError too: only a RimError is the user's
def test_a_bug_shows_its_traceback_from_the_real_command(tmp_path: Path, error: str) -> None:
    code = (
        "import sys, rimcli.cli, rimcli.cli.examples as ex\n"
        "rimcli.cli._register()\n"
        f"def bug(name): raise {error}('an internal bug')\n"
        "ex.example_path = bug\n"
        "sys.argv = ['rim', 'example', 'camera']\n"
        "rimcli.cli.main()\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "Traceback" in r.stderr and f"{error}: an internal bug" in r.stderr
    assert not any(line.startswith("error:") for line in r.stderr.splitlines())


@pytest.mark.parametrize("scale", ["5", "2.5", "1"])
def test_benchmark_refuses_a_scale_inference_does_not_serve(scale: str) -> None:
    result = _invoke("benchmark", "set5", "--scale", scale)
    assert result.exit_code == 2 and "bad scale" in result.output and "use 2, 3, 4" in result.output



def test_click_usage_errors_still_exit_2() -> None:
    result = _invoke("benchmark", "bsd68", "--limit", "0")
    assert result.exit_code == 2 and "Invalid value" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "nope"], "unknown arch 'nope'"),
        (["--arch", "msrim", "--hidden", "7"], "msrim needs an even hidden width"),
        (["--config", "{toml}"], "is not valid TOML"),
        (["--config", "{list}"], "must hold a table of settings"),
    ],
)
def test_train_settings_the_model_refuses_are_user_errors(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "bad.toml").write_text("task = \n")
    (tmp_path / "list.json").write_text("[1, 2]")
    args = [a.format(toml=tmp_path / "bad.toml", list=tmp_path / "list.json") for a in args]
    result = _invoke("train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"), *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_api_argument_errors_are_input_errors_and_value_errors(tmp_path: Path) -> None:
    from rimcli.operators import Blur, Downsample, load_kernel

    for call in (lambda: rimcli.denoise(np.zeros((8, 8), np.int32)), lambda: Downsample(0),
                 lambda: Blur(np.ones((2, 2))), lambda: load_kernel(tmp_path / "missing.npy")):
        with pytest.raises(InputError) as err:
            call()
        assert isinstance(err.value, ValueError)
    (tmp_path / "text.npy").write_text("not an array")
    with pytest.raises(InputError, match=r"text\.npy: not a readable \.npy blur kernel"):
        load_kernel(tmp_path / "text.npy")


@pytest.mark.parametrize("exc", [OSError(5, "Input/output error"), PermissionError(13, "Permission denied")],
                         ids=["OSError", "PermissionError"])
def test_an_os_error_no_rim_error_wraps_is_a_bug(exc: OSError, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's files are wrapped into a RimError where they are opened; a bare OSError that
    escapes a command is a bug (a path of our own, a temp file, ...) and is not disguised."""
    def bug(name: str) -> Path:
        raise exc

    monkeypatch.setattr(cli_examples, "example_path", bug)
    result = _invoke("example", "camera")
    assert result.exception is exc and result.exit_code == 1
    assert "error:" not in result.stderr


def _unreadable(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Reading `path` fails as for a file without read permission (chmod would not stop root)."""
    real = Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)


USER_FILE_CASES = {
    "missing --config": (["train", "--data", "imgs", "--config", "nowhere.toml"], "config file nowhere.toml does not exist"),
    "unreadable --config": (["train", "--data", "imgs", "--config", "cfg.toml"], "cfg.toml cannot be read (Permission denied)"),
    "unreadable manifest": (["models"], "manifest.json cannot be read (Permission denied)"),
    "output under a file": (["example", "camera", "-o", "a-file/camera.png"], "a-file: cannot write there"),
    "run folder under a file": (["train", "-q", "--data", "imgs", "-o", "a-file/run"], "cannot create the run folder"),
}


@pytest.mark.parametrize("case", list(USER_FILE_CASES))
def test_a_missing_or_unreadable_user_file_is_one_line_exit_2(case: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("")
    (tmp_path / "cfg.toml").write_text("hidden = 8\n")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "manifest.json").write_text('{"models": []}')
    monkeypatch.setenv("RIM_WEIGHTS", str(tmp_path / "weights"))
    _unreadable(monkeypatch, Path("cfg.toml"))
    _unreadable(monkeypatch, tmp_path / "weights" / "manifest.json")
    args, message = USER_FILE_CASES[case]
    result = _invoke(*args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(("error", "reason"), [
    (PermissionError(13, "Permission denied", "/x/y.png"), "Permission denied"),  # no errno, no path twice
    (OSError("disk on fire\nsecond line"), "disk on fire"),  # no strerror: the first line of the text
    (ValueError(""), "ValueError"),  # nothing to say: the type
])
def test_os_reason_is_the_short_reason(error: BaseException, reason: str) -> None:
    assert os_reason(error) == reason
