"""Train the production models on one GPU in time-boxed calls, then export and benchmark them on the CPU.

Stages (`python scripts/gpu_recipe.py STAGE ...`):

  prepare  here   copy the training images into local/data/ (git-ignored), the folder a GPU call carries
  gpu      GPU    train every model at once, one process each, for --time-limit seconds. A fresh model
                  first probes its throughput (bf16, torch.compile, batch size; --probe-seconds each) and
                  sets its schedule so that it ends within --train-seconds of training; with --state (the
                  files an earlier call returned) every model resumes instead. Writes <model>.tar (run
                  folder: last.pt, best.pt, log.jsonl, config.json, plan.json, worker.log) and gpu.json
                  into --out ($OUT): flat, at most 8 files, each far below 16 MiB
  speed    GPU    inference throughput (megapixels/s at default steps, fp32 and bf16) of each model and of
                  a DnCNN-sized plain conv net (17 layers, 64 channels) -> speed.json in --out
  finish   here   export each model (self-describing .safetensors) and run its benchmarks on the CPU with
                  the exported file; writes OUT/summary.json {"models": [{"name", "file", "sha256",
                  "benchmarks"}]} (and OUT/bench/<model>/<set>/results.json for record_metrics.py)

--dry-run runs all of them on the CPU with tiny settings: three gpu calls (the second resumes from the
files the first collected, as a second GPU call would; the third extends every plan), speed, finish;
every command's exit code is checked and each collected folder is checked against the $OUT limits.

    python scripts/gpu_recipe.py --dry-run --data ../shared/data/train/bsds400 --bench ../shared/data/bench --out runs/dry

The real run (one H100; at most 10 minutes a command, 30 minutes of device time in all, 64 MiB sent).
Each recipe fine-tunes the bundled file it names (`init_from`), so a short window adds to the CPU hours.

    python scripts/gpu_recipe.py prepare --data ../shared/data/train/bsds400       # -> local/data/bsds400
    # GPU call 1, carry ["local/data"]: probe (~2 min), then train until 510 s
    PYTHONUNBUFFERED=1 python3 scripts/gpu_recipe.py gpu --out "$OUT" --time-limit 510 --train-seconds 840
    rm -rf local/state && cp -r FILES_AT local/state                                 # what came back
    # GPU call 2 (at once, while the machine is warm), carry ["local/data", "local/state"]: resume every
    # model (--fill: one whose plan would end early gets a longer one), then time inference
    PYTHONUNBUFFERED=1 python3 scripts/gpu_recipe.py gpu --state local/state --out "$OUT" --time-limit 470 --fill; \
        python3 scripts/gpu_recipe.py speed --state "$OUT" --out "$OUT"
    rm -rf local/state && cp -r FILES_AT local/state
    # GPU call 3 if 8 device minutes are left: the same as call 2 with --time-limit 360 and no speed stage
    python scripts/gpu_recipe.py finish --state local/state --bench ../shared/data/bench --out runs/gpu

Each call ends within 10 minutes: training stops at --time-limit, a worker still running --grace (60) s
later is killed, and its last checkpoint is collected with the others. --train-seconds is the training
time each model is planned for after its probe. The probes run side by side with the other models'
compiles, and on 2026-11-23 they underrated the two models whose data path is CPU-heavy (bicubic
downscaling; a dense matrix per projection patch) 3 to 8 times: those finished their plans within
call 1. `--fill` (or `--extend KEY=ITERS`, by hand) gives such a model a longer schedule when it resumes;
the cosine restarts from where it is, and best.pt keeps the best validation either way. A model short of
its plan is exported from its best checkpoint. Models are listed in priority order (colour, gray,
super-resolution, 3-task, deblurring): if time runs short, drop from the end with --models. Five small
models leave an H100 mostly idle, hence one process per model sharing it.

The second window (2026-11-24) ran the four models that have aims in issue 16 (--models
rgb,gray,sr,3task) in three calls: --time-limit 510 (probe, then train), 480 with --fill, and 515
with --grace 30 and --extend rgb=13000,gray=15000,sr=8000. --extend sets a plan's total
iterations; here it cut them below the first plans, so that the cosines ended within that last call.
1571 s of device time, counting the machine's start. Each run's log.jsonl holds its validation
curves (to 2T); `scripts/validate_model.py RUN/config.json NAME` scores the bundled file (and,
for a close call, the candidate: the GPU's TF32 convolutions differ slightly, here by at most
0.001 dB in the mean) on the same held-out crops on the CPU.

The third window (2026-11-24) widened the four cells from hidden 64 to 96 (the recipes' `hidden`;
`model.transfer_weights` starts the wide cell computing exactly what the bundled file did) and ran
them in three calls: --time-limit 505 --train-seconds 1300 --probe-seconds 20; 500 with --grace 45
and --fill; 465 with --grace 30 and --extend rgb=8700,gray=9900,sr=4650,3task=2980 (each cosine
ending within the call, from the rates of the call before), then the speed stage: 1564 s of
device time, counting the machine's start. The speed stage times each model at the default steps
of the bundled file it starts from, the steps it ships with.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomli, the same parser (a dependency there)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # the GPU machine runs from a bare checkout


@dataclasses.dataclass(frozen=True)
class Model:
    name: str  # the manifest name it is exported as
    tasks: list[str]  # what the exported file declares it serves
    benches: dict[str, list[str]]  # label -> `rim benchmark` arguments
    tiny_patch: int = 32  # --dry-run crop size (a multiple of every SR scale / of 32 for cs)


_DN = ["--baselines", "none"]  # denoising baselines are slow on the CPU and already in BENCHMARKS.md
MODELS = {  # priority order
    "rgb": Model("rim-rgb-denoise", ["denoise"], {
        "cbsd68": ["cbsd68", "--sigma", "15,25,50", *_DN],
        "cbsd68_quantized": ["cbsd68", "--sigma", "25", "--quantize", *_DN]}),
    "gray": Model("rim-gray-denoise", ["denoise"], {
        "bsd68": ["bsd68", "--sigma", "15,25,50", *_DN],
        "bsd68_quantized": ["bsd68", "--sigma", "25", "--quantize", *_DN],
        "set12": ["set12", "--sigma", "15,25,50", *_DN]}),
    "sr": Model("rim-sr", ["superres"], {
        "b100": ["b100", "--scale", "2,3,4"], "set5": ["set5", "--scale", "2,3,4"],
        "set14": ["set14", "--scale", "2,3,4"]}, tiny_patch=24),
    "3task": Model("rim-3task", ["cs", "denoise"], {
        "projections": ["projections"],
        "bsd68_quantized": ["bsd68", "--sigma", "25", "--quantize", *_DN]}),
    "deblur": Model("rim-rgb-deblur", ["deblur"], {  # BM3D deblurring takes 16 s an image: run it by hand
        "cbsd68_deblur": ["cbsd68", "--blur", "1,1.6,2.5", "--quantize", "--baselines", "wiener"]}),
}
DEFAULT_MODELS = ",".join(MODELS)

#: what --dry-run trains: seconds on 2 CPU cores for all five models
TINY = {"hidden": 8, "steps": 2, "batch": 2, "iters": 6, "warmup": 2, "val_every": 1000, "log_every": 1,
        "val_split": 2, "val_images": 2, "val_crop": 32, "amp": "off", "compile": False}
TINY_BENCH = ["--limit", "2"]
TINY_PROJECTIONS = ["--patches", "8", "--batch", "8"]

#: what comes back from the GPU machine's $OUT, and what may be sent to it
OUT_FILES, OUT_FILE_BYTES, OUT_TOTAL_BYTES, OUT_DEPTH = 8, 16 << 20, 64 << 20, 2
CARRY_BYTES = 56 << 20  # the images; the checkout (~2 MiB) and the state (~10 MiB) travel too
NAME_OK = re.compile(r"^[A-Za-z0-9._-]+$")
RUN_FILES = ("last.pt", "best.pt", "log.jsonl", "config.json", "plan.json", "worker.log")
SAFETY = 0.9  # plan for this fraction of the measured rate (rates drift; a resumed call compiles again)


class RecipeError(RuntimeError):
    pass


# ---------------------------------------------------------------- helpers


def run_checked(cmd: list[str], env: dict[str, str] | None = None) -> None:
    """Run a command, echoing it; a non-zero exit code stops the recipe."""
    print("+ " + " ".join(map(str, cmd)), flush=True)
    code = subprocess.run([str(c) for c in cmd], env=env).returncode
    if code != 0:
        raise RecipeError(f"command failed with exit code {code}: {' '.join(map(str, cmd))}")


def rim(args: list) -> None:
    """Run a `rim` command in this process (one torch import for all of them); any failure stops the recipe."""
    from rimcli.cli import _register, app

    args = [str(x) for x in args]
    print("+ rim " + " ".join(args), flush=True)
    _register()
    try:
        code = app(args, prog_name="rim", standalone_mode=False)
    except Exception as e:  # noqa: BLE001 - usage errors and crashes alike
        raise RecipeError(f"rim {' '.join(args)}: {type(e).__name__}: {e}") from e
    if code not in (None, 0):
        raise RecipeError(f"rim {' '.join(args)} exited with code {code}")


def child_env(tiny: bool) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    if tiny:  # tiny work is fastest on one thread, and leaves the other core alone
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def check_out(out: Path) -> list[Path]:
    """Fail unless `out` would come back whole from the GPU machine's $OUT."""
    files = sorted(p for p in out.rglob("*") if p.is_file())
    problems = [f"{len(files)} files (at most {OUT_FILES})"] if len(files) > OUT_FILES else []
    total = sum(p.stat().st_size for p in files)
    if total > OUT_TOTAL_BYTES:
        problems.append(f"{total} bytes in all (at most {OUT_TOTAL_BYTES})")
    for p in files:
        rel = p.relative_to(out)
        if p.stat().st_size > OUT_FILE_BYTES:
            problems.append(f"{rel} is {p.stat().st_size} bytes (at most {OUT_FILE_BYTES})")
        if len(rel.parts) - 1 > OUT_DEPTH:
            problems.append(f"{rel} is more than {OUT_DEPTH} folders down")
        if not all(NAME_OK.match(part) for part in rel.parts):
            problems.append(f"{rel} has a character other than letters, digits, '.', '_', '-'")
    if problems:
        raise RecipeError(f"{out} would not come back from $OUT: " + "; ".join(problems))
    return files


def pack(run: Path, dest: Path) -> None:
    with tarfile.open(dest, "w") as tar:  # checkpoints do not compress
        for name in RUN_FILES:
            if (run / name).is_file():
                tar.add(run / name, arcname=name)


def unpack(state: Path | None, key: str, run: Path) -> bool:
    """Restore a run folder from an earlier call's <key>.tar; True if there is a checkpoint to resume."""
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    tar_path = state / f"{key}.tar" if state else None
    if tar_path and tar_path.is_file():
        with tarfile.open(tar_path) as tar:
            tar.extractall(run, filter="data")
    return (run / "last.pt").is_file()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


def progress(run: Path) -> dict:
    """Iteration reached, planned iterations and best validation PSNR, from the run's text files."""
    plan = json.loads((run / "plan.json").read_text()) if (run / "plan.json").is_file() else {}
    log = read_jsonl(run / "log.jsonl")
    vals = [r["val_psnr"] for r in log if "val_psnr" in r]
    return {"iteration": max((r["iter"] for r in log), default=0), "iters": plan.get("iters"),
            "best_val_psnr": max(vals, default=None), "choice": plan.get("choice")}


def settings(key: str, data: Path, device: str, tiny: bool) -> dict:
    s = tomllib.loads((ROOT / "recipes" / f"{key}.toml").read_text())
    s.update(data=str(data), device=device)
    if tiny:  # a fine-tuned model keeps its width: the weights it starts from set it
        s.update({k: v for k, v in TINY.items() if not (k == "hidden" and s.get("init_from"))},
                 patch=MODELS[key].tiny_patch)
    return s


def candidates(base: dict, tiny: bool) -> list[dict]:
    """Settings the probe times; the first is the recipe's own."""
    b = base["batch"]
    if tiny:
        return [{"amp": "off", "compile": False, "batch": b}, {"amp": "off", "compile": False, "batch": 2 * b}]
    return [{"amp": "bf16", "compile": False, "batch": b}, {"amp": "bf16", "compile": True, "batch": b},
            {"amp": "bf16", "compile": True, "batch": 2 * b}]


# ---------------------------------------------------------------- prepare


def stage_prepare(a: argparse.Namespace) -> Path:
    src = a.data
    if not src or not src.is_dir():
        raise RecipeError(f"--data {src} is not a folder of training images")
    dest = (a.out or ROOT / "local" / "data") / src.name
    size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    if size > CARRY_BYTES:
        raise RecipeError(f"{src} holds {size >> 20} MiB; at most {CARRY_BYTES >> 20} MiB can travel with a call")
    if dest.resolve().is_relative_to(ROOT):  # inside the checkout: it must be ignored, or it travels twice
        dest.mkdir(parents=True, exist_ok=True)
        code = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", str(dest.resolve())]).returncode
        if code == 1:
            raise RecipeError(f"{dest} is not ignored by git; put it under an ignored folder such as local/")
        if code != 0:
            print(f"warning: could not ask git whether {dest} is ignored (exit code {code})", file=sys.stderr)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest)
    print(f"copied {size >> 20} MiB of training images to {dest}; name its top folder in the GPU call's carry")
    return dest


# ---------------------------------------------------------------- gpu: one process per model


def stage_gpu(a: argparse.Namespace) -> None:
    if a.out is None:
        raise RecipeError("--out is required (on the GPU machine: --out \"$OUT\")")
    data = a.data or ROOT / "local" / "data" / "bsds400"
    work = a.work or ROOT / "local" / "work"
    a.out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + a.time_limit
    threads = 1 if a.tiny else max(1, (os.cpu_count() or 4) // len(a.models))
    procs = {}
    for key in a.models:
        run = work / key
        job = {"key": key, "run": str(run), "resume": unpack(a.state, key, run), "deadline": deadline,
               "settings": settings(key, data, a.device, a.tiny), "probe_seconds": a.probe_seconds,
               "train_seconds": a.train_seconds, "threads": threads, "tiny": a.tiny, "iters": a.extend.get(key),
               "fill": a.fill}
        (run / "job.json").write_text(json.dumps(job, indent=1))
        with open(run / "worker.log", "a") as log:  # the child holds its own copy of the handle
            procs[key] = subprocess.Popen([sys.executable, __file__, "worker", "--job", str(run / "job.json")],
                                          stdout=log, stderr=subprocess.STDOUT, env=child_env(a.tiny))
        print(f"{key}: {'resuming' if job['resume'] else 'probing, then training'} (pid {procs[key].pid})", flush=True)
    status = {}
    for key, p in procs.items():
        try:
            code = p.wait(timeout=max(1.0, deadline + a.grace - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            code = p.wait()
            print(f"{key}: killed {a.grace:.0f} s after the deadline", file=sys.stderr)
        pack(work / key, a.out / f"{key}.tar")
        status[key] = {"exit_code": code, **progress(work / key)}
    (a.out / "gpu.json").write_text(json.dumps({"time_limit": a.time_limit, "models": status}, indent=1))
    for key, s in status.items():
        print(f"{key:6s} exit {s['exit_code']}  iteration {s['iteration']}/{s['iters']}  best val {s['best_val_psnr']}"
              f"  {json.dumps(s['choice'])}")
    check_out(a.out)
    failed = [k for k, s in status.items() if s["exit_code"] != 0]
    for key in failed:
        print(f"--- {key} worker.log (end)\n" + (work / key / "worker.log").read_text()[-3000:], file=sys.stderr)
    if failed:
        raise RecipeError(f"training failed for {', '.join(failed)} (their state is collected in {a.out})")


def stage_worker(a: argparse.Namespace) -> None:
    """One model in one process: probe and plan (fresh) or resume; then train until the deadline."""
    import torch

    from rimcli.training import TrainConfig, load_checkpoint, train

    job = json.loads(a.job.read_text())
    torch.set_num_threads(job["threads"])
    run = Path(job["run"])
    if job["resume"]:
        ck = load_checkpoint(run / "last.pt")  # the plan (amp, compile, batch, iters) is in its config
        s = job["settings"]
        cfg = TrainConfig.from_dict({**ck["config"], "data": s["data"], "device": s["device"], "out": str(run)})
        left = max(0.0, job["deadline"] - time.time())
        iters = job.get("iters") or (fill_iters(ck["iteration"], cfg.iters, trained_rate(run, cfg.batch), left)
                                     if job.get("fill") else cfg.iters)
        if iters != cfg.iters:  # a longer schedule: the cosine restarts from where it is (best.pt keeps the best)
            plan = json.loads((run / "plan.json").read_text())
            plan["extensions"] = [*plan.get("extensions", []), {"at": ck["iteration"], "from": cfg.iters, "to": iters}]
            (run / "plan.json").write_text(json.dumps({**plan, "iters": iters}, indent=1))
            cfg = dataclasses.replace(cfg, iters=iters)
        print(f"resuming at iteration {ck['iteration']} of {cfg.iters}", flush=True)
    else:
        base = TrainConfig.from_dict({**job["settings"], "out": str(run)})
        if not (run / "plan.json").is_file():  # an earlier call may have probed and then failed
            (run / "plan.json").write_text(json.dumps(probe(base, job), indent=1))
        plan = json.loads((run / "plan.json").read_text())
        cfg = dataclasses.replace(base, **plan["choice"], iters=plan["iters"])
    left = max(0.0, job["deadline"] - time.time())
    command = (f"python3 scripts/gpu_recipe.py gpu: recipes/{job['key']}.toml with amp {cfg.amp}, compile {cfg.compile}, "
               f"batch {cfg.batch}, iters {cfg.iters} (plan.json: its throughput probe and any extensions)")
    train(cfg, resume=job["resume"], command=command, time_limit=left,
          on_log=lambda r: print(json.dumps({k: v for k, v in r.items() if k != "val"}), flush=True))


def trained_rate(run: Path, batch: int) -> float:
    """Iterations/s of the run's recent training (median of its last 10 log records), 0 if none."""
    rates = [r["patches_per_s"] / batch for r in read_jsonl(run / "log.jsonl") if "patches_per_s" in r][-10:]
    return statistics.median(rates) if rates else 0.0


def fill_iters(iteration: int, iters: int, rate: float, seconds: float) -> int:
    """The schedule length for a resumed run: `iters`, unless the plan would end in under 3/4 of this
    call's `seconds` at the measured `rate`; then long enough to end with the call. (A throughput probe
    run beside three other models' compiles can underrate a CPU-heavy data path several times.)"""
    reach = iteration + int(rate * seconds * SAFETY)
    return reach if iters - iteration < 0.75 * (reach - iteration) else iters


def probe(base, job: dict) -> dict:  # noqa: ANN001 - a TrainConfig
    """Train each candidate setting for a short while; plan the run on the fastest."""
    results = []
    for i, cand in enumerate(candidates(dataclasses.asdict(base), job["tiny"])):
        out = Path(job["run"]) / f"probe{i}"
        cfg = dataclasses.replace(base, **cand, out=str(out), log_every=1 if job["tiny"] else 10, val_every=10**9,
                                  val_images=1)
        seconds = job["probe_seconds"] * (2 if cand["compile"] else 1)  # compiling takes the first part
        try:
            rate = iterations_per_second(cfg, seconds)
            results.append({**cand, "iters_per_s": round(rate, 3), "patches_per_s": round(rate * cand["batch"], 1)})
        except Exception as e:  # noqa: BLE001 - a setting that fails (say, compile) is just not chosen
            results.append({**cand, "error": f"{type(e).__name__}: {e}"})
        shutil.rmtree(out, ignore_errors=True)
        print(json.dumps({"probe": results[-1]}), flush=True)
    ok = [r for r in results if "error" not in r]
    if not ok:
        raise RecipeError(f"every probed setting failed: {results}")
    # a bigger batch must earn its fewer updates
    best = max(ok, key=lambda r: r["patches_per_s"] * (1.0 if r["batch"] == base.batch else 0.9))
    iters = int(min(base.iters, max(base.warmup + 1, best["iters_per_s"] * job["train_seconds"] * SAFETY)))
    choice = {k: best[k] for k in ("amp", "compile", "batch")}
    return {"probe": results, "choice": choice, "iters": iters, "train_seconds": job["train_seconds"]}


def iterations_per_second(cfg, seconds: float) -> float:  # noqa: ANN001 - a TrainConfig
    """Train for `seconds`; the rate over the second half of the logged iterations (after compiling)."""
    from rimcli.training import train

    marks: list[tuple[float, int]] = [(time.monotonic(), 0)]
    train(cfg, time_limit=seconds, on_log=lambda r: marks.append((time.monotonic(), r["iter"])) if "loss" in r else None)
    (t1, i1), (t2, i2) = marks[len(marks) // 2] if len(marks) > 3 else marks[0], marks[-1]
    if i2 <= i1:
        raise RecipeError(f"no iterations logged in {seconds:.0f} s")
    return (i2 - i1) / (t2 - t1)


# ---------------------------------------------------------------- speed


def stage_speed(a: argparse.Namespace) -> None:
    import torch

    from rimcli.inference import resolve_device
    from rimcli.model import RIM, RIMConfig
    from rimcli.tasks import DEFAULT_SIGMA, denoise_operator, superres_operator
    from rimcli.training import load_checkpoint

    if a.state is None or a.out is None:
        raise RecipeError("speed needs --state (the collected runs) and --out")
    device = resolve_device(a.device)
    precisions = ["fp32", "bf16"] if device.type == "cuda" else ["fp32"]
    size, repeats = (32, 1) if a.tiny else (1024, 10)
    rows = []
    for key in [k for k in a.models if (a.state / f"{k}.tar").is_file()]:
        run = (a.work or ROOT / "local" / "speed") / key
        unpack(a.state, key, run)
        ck = load_checkpoint(run / ("best.pt" if (run / "best.pt").is_file() else "last.pt"))
        model = RIM(RIMConfig.from_dict(ck["model_config"]))
        model.load_state_dict(ck["model"])
        # SR x2 and denoising at the default sigma: the settings users run most
        op, sigma = (superres_operator(2), 0.0) if key == "sr" else (denoise_operator(), DEFAULT_SIGMA["denoise"] / 255)
        x = torch.rand(1, model.config.channels, size, size, generator=torch.Generator().manual_seed(0))
        y = op.measure(x, sigma, torch.Generator().manual_seed(1))
        steps = shipped_steps(ck["config"])
        for prec in precisions:
            t = median_time(device, repeats, _restore, y, op, sigma, model, steps, device, prec)
            rows.append({"model": MODELS[key].name, "hidden": model.config.hidden, "steps": steps, "precision": prec,
                         "megapixels_per_s": size**2 / 1e6 / t})
    for channels in (1, 3):
        net = _dncnn(channels).to(device).eval()
        x = torch.rand(1, channels, size, size, device=device)
        for prec in precisions:
            t = median_time(device, repeats, _forward, net, x, prec)
            rows.append({"model": f"dncnn17-64 ({channels} ch)", "steps": 1, "precision": prec,
                         "megapixels_per_s": size**2 / 1e6 / t})
    a.out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    meta = {"command": " ".join(["python3", "scripts/gpu_recipe.py", *sys.argv[1:]]), "repeats": repeats,
            "rim_steps": "default",  # see shipped_steps (files from before 2026-11-24's third window: the horizon)
            "torch": f"torch {torch.__version__}", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (a.out / "speed.json").write_text(json.dumps({"device": name, "image": [size, size], **meta, "rows": rows}, indent=1))
    for r in rows:
        print(f"{r['model']:28s} T={r['steps']:<3d} {r['precision']}: {r['megapixels_per_s']:8.2f} MP/s")
    check_out(a.out)


def shipped_steps(config: dict) -> int:
    """The steps a run's model will ship with: those of the bundled file it starts from (its
    successor keeps them, so inference costs stay comparable), else its training horizon."""
    from rimcli.training import init_file
    from rimcli.weights import WeightsError, file_metadata

    try:
        return int(file_metadata(init_file(config["init_from"]))["default_steps"])
    except (KeyError, TypeError, WeightsError):
        return int(config["steps"])


def median_time(device, repeats: int, fn, *args) -> float:  # noqa: ANN001
    """Median wall time of fn(*args) after one warm-up call, device work included."""
    import torch

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn(*args)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    once()
    return statistics.median(once() for _ in range(repeats))


def _restore(y, op, sigma, model, steps, device, precision):  # noqa: ANN001, ANN202
    from rimcli.inference import restore

    return restore(y, op, sigma, model, steps, device=device, precision=precision)


def _forward(net, x, precision: str) -> None:  # noqa: ANN001
    import torch

    with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        net(x)


def _dncnn(channels: int):  # noqa: ANN202 - a torch module
    """A DnCNN-sized plain conv net (Zhang et al. 2017): 17 conv layers of 64 channels, BN + ReLU."""
    import torch.nn as nn

    layers = [nn.Conv2d(channels, 64, 3, padding=1), nn.ReLU(inplace=True)]
    for _ in range(15):
        layers += [nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.Conv2d(64, channels, 3, padding=1))


# ---------------------------------------------------------------- finish: export, benchmark, summary


def stage_finish(a: argparse.Namespace) -> None:
    from rimcli.export import export_run

    if a.state is None or a.bench is None or a.out is None:
        raise RecipeError("finish needs --state (the collected runs), --bench and --out")
    models = []
    for key in [k for k in a.models if (a.state / f"{k}.tar").is_file()]:
        m, run = MODELS[key], a.out / "runs" / key
        if not unpack(a.state, key, run):
            raise RecipeError(f"{a.state / (key + '.tar')} holds no checkpoint")
        entry = export_run(run, m.name, weights_dir=a.out / "weights", tasks=m.tasks,
                           description=f"{m.name} (GPU recipe recipes/{key}.toml, scripts/gpu_recipe.py)")
        file = a.out / "weights" / entry.file
        benchmarks = {}
        for label, args in m.benches.items():
            report = a.out / "bench" / key / label / "results.json"  # the name record_metrics.py reads
            tiny = [*TINY_BENCH, *(TINY_PROJECTIONS if args[0] == "projections" else [])] if a.tiny else []
            rim(["benchmark", *args, "--data", a.bench, "--model", file, "--json", report, "--device", a.device,
                 "--max-steps", entry.default_steps, *tiny])  # curves to T only: half the CPU time of 2T
            benchmarks[label] = rim_psnr(json.loads(report.read_text()))
        models.append({"name": m.name, "file": str(file), "sha256": entry.sha256, "benchmarks": benchmarks})
    if not models:
        raise RecipeError(f"no <model>.tar for {', '.join(a.models)} in {a.state}")
    summary = {"models": models}
    if (a.state / "speed.json").is_file():
        summary["speed"] = json.loads((a.state / "speed.json").read_text())
    (a.out / "summary.json").write_text(json.dumps(summary, indent=1))
    for m in models:
        print(m["name"], json.dumps(m["benchmarks"]))
    print(f"wrote {a.out / 'summary.json'}")


def rim_psnr(report: dict) -> dict[str, float]:
    """Setting label -> the RIM's mean PSNR, from a `rim benchmark --json` report."""
    return {run["label"]: round(s["psnr"], 4) for run in report["runs"] for s in run["summary"] if s.get("kind") == "rim"}


# ---------------------------------------------------------------- dry run


def dry_run(a: argparse.Namespace) -> None:
    """Every stage on the CPU with tiny settings; O/gpu-1..3 are what three GPU calls return (the third
    extends every plan, as --extend or --fill does for a model that ended its plan early)."""
    if a.data is None or a.bench is None or a.out is None:
        raise RecipeError("--dry-run needs --data, --bench and --out")
    out = a.out
    for sub in ("carry", "work-1", "work-2", "work-3", "gpu-1", "gpu-2", "gpu-3", "runs", "weights", "bench", "speed"):
        shutil.rmtree(out / sub, ignore_errors=True)
    me = [sys.executable, __file__]
    common = ["--tiny", "--device", "cpu", "--models", ",".join(a.models)]
    env = child_env(True)
    t0 = time.monotonic()
    run_checked([*me, "prepare", "--data", a.data, "--out", out / "carry"], env)
    data = out / "carry" / a.data.name
    run_checked([*me, "gpu", *common, "--data", data, "--work", out / "work-1", "--out", out / "gpu-1",
                 "--time-limit", "0", "--grace", "540", "--train-seconds", "1", "--probe-seconds", "0.2"], env)
    run_checked([*me, "gpu", *common, "--data", data, "--state", out / "gpu-1", "--work", out / "work-2",
                 "--out", out / "gpu-2", "--time-limit", "120", "--grace", "420"], env)
    second = json.loads((out / "gpu-2" / "gpu.json").read_text())["models"]
    longer = ",".join(f"{key}={second[key]['iters'] + 2}" for key in a.models)  # a plan ended early: go on
    run_checked([*me, "gpu", *common, "--data", data, "--state", out / "gpu-2", "--work", out / "work-3",
                 "--out", out / "gpu-3", "--time-limit", "120", "--grace", "420", "--extend", longer], env)
    run_checked([*me, "speed", *common, "--state", out / "gpu-3", "--work", out / "speed", "--out", out / "gpu-3"], env)
    run_checked([*me, "finish", *common, "--state", out / "gpu-3", "--bench", a.bench, "--out", out], env)
    first, third = (json.loads((out / d / "gpu.json").read_text())["models"] for d in ("gpu-1", "gpu-3"))
    for key in a.models:
        i1, i2, planned, i3 = first[key]["iteration"], second[key]["iteration"], second[key]["iters"], third[key]["iteration"]
        if not 0 < i1 < i2 == planned < i3 == planned + 2 == third[key]["iters"]:
            raise RecipeError(f"{key}: a resumed call did not continue (iterations {i1} -> {i2} of {planned} -> {i3})")
    print(f"dry run passed in {time.monotonic() - t0:.0f} s: {out / 'summary.json'}")


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", nargs="?", choices=["prepare", "gpu", "speed", "finish", "worker"])
    ap.add_argument("--dry-run", action="store_true", help="every stage on the CPU with tiny settings, into --out")
    ap.add_argument("--data", type=Path, help="training images (prepare: the source; gpu: default local/data/bsds400)")
    ap.add_argument("--bench", type=Path, help="benchmark sets (root of bsd68, cbsd68, set12, sr/Set5, ...)")
    ap.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None,
                    help="where the stage writes (gpu, speed: $OUT; prepare: default local/data)")
    ap.add_argument("--state", type=Path, help="the files an earlier gpu call returned (resume / speed / finish)")
    ap.add_argument("--work", type=Path, help="scratch run folders (default local/work)")
    ap.add_argument("--models", default=DEFAULT_MODELS, help=f"comma list, in priority order (default {DEFAULT_MODELS})")
    ap.add_argument("--time-limit", type=float, default=510.0, help="gpu: seconds from the start until training stops")
    ap.add_argument("--train-seconds", type=float, default=840.0,
                    help="gpu: training seconds each fresh model is planned for, over all calls")
    ap.add_argument("--grace", type=float, default=60.0,
                    help="gpu: seconds a worker may run past --time-limit (final validation, checkpoint) before it is killed")
    ap.add_argument("--probe-seconds", type=float, default=15.0, help="gpu: seconds per probed setting (x2 compiled)")
    ap.add_argument("--extend", default="", metavar="KEY=ITERS,...",
                    help="gpu --state: resume these models to a longer schedule (a model that ended its plan early)")
    ap.add_argument("--fill", action="store_true",
                    help="gpu --state: a resumed model whose plan would end well before --time-limit is extended to it")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tiny", action="store_true", help="tiny settings (what --dry-run uses)")
    ap.add_argument("--job", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    # models are named from the checkout's weights/ alone (no user folder: the GPU image lacks platformdirs)
    os.environ.setdefault("RIM_USER_MODELS", str(ROOT / "local" / "user-models"))
    a.models = [m.strip() for m in a.models.split(",") if m.strip()]
    try:
        a.extend = {k.strip(): int(v) for k, v in (kv.split("=") for kv in a.extend.split(",") if kv.strip())}
    except ValueError:
        ap.error("--extend: KEY=ITERS,... (for example sr=3000)")
    if set(a.extend) - set(a.models) or any(v < 1 for v in a.extend.values()):
        ap.error(f"--extend: models among --models ({','.join(a.models)}) and positive iterations")
    unknown = [m for m in a.models if m not in MODELS]
    if unknown or not a.models:
        ap.error(f"--models: choose from {DEFAULT_MODELS}")
    if a.dry_run == bool(a.stage):
        ap.error("give a stage or --dry-run")
    stage = {"prepare": stage_prepare, "gpu": stage_gpu, "speed": stage_speed, "finish": stage_finish,
             "worker": stage_worker, None: dry_run}[a.stage]
    try:
        stage(a)
    except RecipeError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
