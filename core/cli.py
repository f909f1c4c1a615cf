"""The command line: `python -m core data build|import|info`, and the engine's other verbs.

Every verb prints a one-line reason and exits with status 2 on bad input; it never
prints a traceback for a user's mistake.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from core import config


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror and e.filename and not str(e).startswith("cannot"):
        return f"{e.filename}: {e.strerror}"
    return " ".join(str(e).split()) or type(e).__name__


def _bar(frac: float, msg: str) -> None:
    n = int(frac * 30)
    sys.stderr.write(f"\r[{'#' * n}{'.' * (30 - n)}] {msg}   ")
    if frac >= 1.0:
        sys.stderr.write("\n")
    sys.stderr.flush()


def cmd_data(a) -> int:
    from core import data
    if a.action == "build":
        t = time.time()
        path = data.build(name=a.name, profile=a.profile, n=a.n, seed=a.seed, device=a.device, progress=_bar,
                          nuisance=a.nuisance, physics=a.physics)
        ds = data.Dataset(path)
        print(f"built {ds.name}: {ds.n} spectra in {time.time() - t:.1f} s -> {path} (fingerprint {ds.fingerprint})")
    elif a.action == "import":
        if not a.file:
            raise data.DataError("data import needs a file: python -m core data import FILE.h5 [--name NAME]")
        path = data.import_hdf5(a.file, name=a.name, progress=_bar)
        ds = data.Dataset(path)
        print(f"imported {ds.name}: {ds.n} spectra x {ds.n_pix} pixels -> {path} (fingerprint {ds.fingerprint})")
    elif a.action == "info":
        names = [a.name or a.file] if (a.name or a.file) else data.list_datasets()
        if not names:
            print("no data sets yet; build one with: python -m core data build --profile quick")
        for nm in names:
            for k, v in data.Dataset(nm).info().items():
                print(f"{k:>18}: {v}")
            print()
    return 0


def _suite_specs(a) -> list[dict]:
    """The specs of --suite for --profile/--dataset, narrowed to --only models."""
    from core.engine import suites
    from core.engine.spec import replicates
    specs = suites.suite(a.suite, a.profile, a.dataset)
    seeds = a.seeds if getattr(a, "seeds", None) is not None else config.PROFILE_SEEDS[a.profile]
    if seeds > 1:
        specs = replicates(specs, seeds)
    if a.only:
        only = set(a.only.split(","))
        specs = [s for s in specs if s["model"] in only]
        if not specs:
            raise ValueError(f"--only {a.only}: no such model in suite {a.suite!r}")
    return specs


def cmd_train(a) -> int:
    from core import data
    from core.engine import executor
    if a.gpu_slots < 0 or (a.gpu_slots and (a.scheduler or a.cluster)):
        raise ValueError(f"--gpu-slots {a.gpu_slots}: a whole number of fits per GPU, at least 1, for the local "
                         f"worker processes (a Dask cluster's workers say their own GPU resources)")
    specs = _suite_specs(a)
    if a.noise is not None:
        specs = [s for s in specs if abs(s["noise_level"] - a.noise) < 1e-9]
    from core.data import matched
    from core.data.ensure import ensure_built
    if a.suite == "robustness":     # its augmented twin (the survey nuisance recipe) and the clean data set
        from core.engine.suites import robustness
        for name in robustness.ensure_datasets(a.profile, a.dataset, progress=_bar):
            print(f"built data set {name} for the robustness suite", file=sys.stderr)
    for ds_name in dict.fromkeys(s["dataset"] for s in specs):    # the profile's, a suite's physics variants
        if ds_name in data.list_datasets():
            continue
        if a.dataset and matched.load_recipe(ds_name) is None:
            raise data.DataError(f"data set {ds_name!r} not found; build or import it first")
        print(f"data set {ds_name} not found: building it (profile {a.profile})", file=sys.stderr)
        ensure_built(ds_name, a.profile, progress=_bar)
    t = time.time()
    if a.scheduler or a.cluster:
        from core.engine import cluster
        slurm = {"queue": a.queue, "walltime": a.walltime, "gpus": a.gpus, "jobs": a.jobs}
        with cluster.connect(scheduler=a.scheduler, cluster=a.cluster or "local", workers=a.workers or None,
                             slurm=slurm) as client:
            res = cluster.run_specs(specs, client, force=a.force)
    else:
        if a.gpu_slots:
            os.environ["LOGG_GPU_SLOTS"] = str(a.gpu_slots)
        workers = a.workers if a.workers else executor.default_workers()
        res = executor.run_many(specs, force=a.force, workers=workers)
    failed = sum(isinstance(r, Exception) for r in res)
    print(f"{len(res) - failed} of {len(res)} runs done in {time.time() - t:.1f} s"
          + (f"; {failed} failed (see python -m core runs --failed)" if failed else ""))
    return 1 if failed else 0


def cmd_registry(a) -> int:
    """rebuild: recreate the SQLite index from artifacts/runs/*/run.json; check: rebuild into a temporary
    file and list what the live index says differently (exit 1 when anything does)."""
    import tempfile
    from pathlib import Path

    from core.engine import registry
    if a.action == "rebuild":
        if a.to and not Path(a.to).resolve().parent.is_dir():
            raise OSError(f"cannot write {a.to}: its folder does not exist")
        n = registry.rebuild(Path(a.to) if a.to else None)
        print(f"indexed {n['done']} finished runs from {config.runs_dir()} into {n['path']}"
              + (f"; {n['incomplete_folders']} incomplete folder(s) skipped" if n["incomplete_folders"] else "")
              + (f"; {n['kept_unfinished']} unfinished run(s) kept from the old index" if n["kept_unfinished"] else ""))
        return 0
    with tempfile.TemporaryDirectory() as d:
        n = registry.rebuild(Path(d) / "rebuilt.sqlite")
        live = registry.connect()
        diffs = registry.differences(live, registry.connect(Path(d) / "rebuilt.sqlite", readonly=True))
    for line in diffs[:50]:
        print(line)
    print(f"{n['done']} run folders, {len(diffs)} difference(s) from the live index"
          + (" (first 50 above)" if len(diffs) > 50 else ""))
    return 1 if diffs else 0


def cmd_report(a) -> int:
    from core.analysis import breakdown, learning, report, transfer
    print(learning.markdown(a.profile, a.dataset) if a.suite == learning.SUITE else
          transfer.markdown(a.profile, a.dataset) if a.suite == transfer.SUITE else
          report.markdown(a.suite, a.profile, a.dataset))
    by = a.by or ("snr" if a.suite == "report" else "none")
    if by != "none":
        print()
        print(breakdown.markdown(a.suite, a.profile, a.dataset, by=by))
    return 0


def cmd_runs(a) -> int:
    from core.engine import registry
    con = registry.connect()
    rows = registry.runs(con, status="failed" if a.failed else None)
    for r in rows:
        m = r.get("metrics") or {}
        r2 = f"R2={m['r2']:.3f}" if "r2" in m else ""
        print(f"{r['run_id']}  {r['status']:<11} {r['model']:<18} noise={r['noise_level']:<4g} {r2}  {r['updated']}")
        if a.failed and r.get("error"):
            print("    " + r["error"].splitlines()[0])
    if not rows:
        print("no runs" + (" failed" if a.failed else " yet"))
    return 0


def _client_token(a) -> str | None:
    """The admin token for a write action: --token-file, else LOGG_TOKEN, else --token (which `ps`
    shows every user of the machine: the first two do not)."""
    if a.token_file:
        try:
            with open(a.token_file) as f:
                return f.read().strip() or None
        except OSError as e:
            raise ValueError(f"--token-file {a.token_file}: cannot be read ({e.strerror})") from None
    if a.token:
        print("note: --token is visible to every user in `ps`; prefer --token-file FILE or LOGG_TOKEN",
              file=sys.stderr)
        return a.token
    return os.environ.get("LOGG_TOKEN")


def cmd_jobs(a) -> int:
    from core.engine import jobs
    token = _client_token(a) if a.action in ("submit", "cancel") else None
    if a.action == "submit":
        specs = _suite_specs(a)
        label = f"{a.suite}" + (f" ({a.only})" if a.only else "") + f", {a.profile}"
        jid, created = jobs.submit(specs, label=label, token=token)
        print(jid)
        if not created:
            print(f"an identical job is already queued or running: job {jid}", file=sys.stderr)
        if not a.no_worker and jobs.ensure_worker():
            print("started a worker", file=sys.stderr)
    elif a.action == "list":
        rows = jobs.list_jobs()
        for j in rows:
            p = j["progress"] or {}
            prog = f"spec {p.get('spec')}/{p.get('of')} {p.get('model', '')}" if p else ""
            if "epoch" in p:
                prog += f" epoch {p['epoch']}" + (" (to convergence)" if p.get("until") == "flat" else f"/{p.get('epochs', '')}")
            print(f"{j['job_id']:>4}  {j['state']:<11} {j['label']:<40} {prog}  {j['created']}")
        if not rows:
            print("no jobs")
    elif a.action == "cancel":
        if a.id is None:
            raise ValueError("jobs cancel needs a job id")
        print(jobs.cancel(a.id, token=token))
    elif a.action == "log":
        if a.id is None:
            raise ValueError("jobs log needs a job id (python -m core jobs list shows them)")
        if jobs.get(a.id) is None:
            raise ValueError(f"no job {a.id} (python -m core jobs list shows them)")
        text = jobs.tail(a.id, 200)
        print(text if text else f"job {a.id} has written no log yet")
    return 0


def cmd_digest(a) -> int:
    from core.analysis import digest, digest_html
    for path in (a.html, a.out):     # a path that cannot be written fails before the digest is computed
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise ValueError(f"{path}: its folder does not exist")
    if a.html:    # one self-contained HTML file with the key charts, for the meeting notes
        page = digest_html.build(a.profile, a.dataset, since=a.since, lang=a.lang)
        with open(a.html, "w", encoding="utf-8") as f:
            f.write(page)
        print(f"wrote {a.html}", file=sys.stderr)
        if not a.out:
            return 0
    md = digest.build(a.profile, a.dataset, since=a.since, lang=a.lang)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(md)
        print(f"wrote {a.out}", file=sys.stderr)
    else:
        print(md)
    return 0


def cmd_worker(a) -> int:
    from core.engine import jobs
    n = jobs.worker(idle_exit_s=a.idle, once=a.once, lock_fd=a.lock_fd)
    print(f"worker: {n} job(s) run", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description="log g study engine")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="build, import or describe data sets")
    d.add_argument("action", choices=["build", "import", "info"])
    d.add_argument("file", nargs="?", help="HDF5 file to import (data import)")
    d.add_argument("--name", help="data set name (default: the profile's, or the file's stem)")
    d.add_argument("--profile", default="quick", choices=list(config.PROFILES))
    d.add_argument("--n", type=int, help="number of spectra (default: the profile's)")
    d.add_argument("--seed", type=int)
    d.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    d.add_argument("--nuisance", choices=list(config.NUISANCE_RECIPES),
                   help="draw per-star RV, resolution, continuum tilt and tellurics from this recipe's priors "
                        "(data build; default: the profile's, none)")
    d.add_argument("--physics", metavar="NAME[,NAME]",
                   help="a physics variant of the simulator (data build): " + ", ".join(config.PHYSICS_RECIPES)
                        + "; several joined by ',' (fe2,cn); default: this version's physics")
    d.set_defaults(func=cmd_data)

    from core.engine.suites import SUITES
    t = sub.add_parser("train", help="run a suite of specs (cached runs are reused)")
    t.add_argument("--suite", default="report", choices=list(SUITES))
    t.add_argument("--profile", default="quick", choices=list(config.PROFILES))
    t.add_argument("--only", help="comma-separated model names of the suite to run")
    t.add_argument("--noise", type=float, help="only this noise level")
    t.add_argument("--dataset", help="data set name (default: the profile's)")
    t.add_argument("--force", action="store_true", help="refit even when a cached run exists")
    t.add_argument("--seeds", type=int, default=None,
                   help="training replicates per spec (another training seed each, the same data and test noise; "
                        "replicate 0 is the run a single seed gives; default: the profile's, quick 2, default 3, "
                        "full 5; fits without a seed, Ridge, the Cannon, the ceiling, get one)")
    t.add_argument("--workers", type=int, default=0,
                   help="fit this many specs at once, each in its own process (default: 2 on a CPU with "
                        "2 or more cores; with GPUs, the number of GPUs x --gpu-slots, each worker given one card)")
    t.add_argument("--gpu-slots", type=int, default=0, metavar="N",
                   help="fits that share one GPU side by side (default: LOGG_GPU_SLOTS, else 1)")
    t.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="fit on the Dask cluster of this running scheduler (its workers must see LOGG_ARTIFACTS at "
                        "the same path); see docs/cluster.md")
    t.add_argument("--cluster", choices=["local", "slurm"],
                   help="fit on a new Dask cluster: local (a LocalCluster of --workers processes) or slurm "
                        "(dask-jobqueue's SLURMCluster; --queue, --walltime, --gpus, --jobs, the rest from its "
                        "config file)")
    t.add_argument("--queue", help="SLURM partition (--cluster slurm)")
    t.add_argument("--walltime", help="SLURM wall time per job, HH:MM:SS (--cluster slurm)")
    t.add_argument("--gpus", type=int, help="GPUs per SLURM job (--cluster slurm)")
    t.add_argument("--jobs", type=int, help="SLURM jobs to start (--cluster slurm; default 1)")
    t.set_defaults(func=cmd_train)

    rg = sub.add_parser("registry", help="the run index: rebuild it from the run folders, or check it against them")
    rg.add_argument("action", choices=["rebuild", "check"])
    rg.add_argument("--to", help="rebuild into this file instead of replacing artifacts/registry.sqlite")
    rg.set_defaults(func=cmd_registry)

    r = sub.add_parser("report", help="print a suite's results as a markdown table")
    r.add_argument("--suite", default="report", choices=list(SUITES))
    r.add_argument("--profile", default="quick", choices=list(config.PROFILES))
    r.add_argument("--dataset")
    r.add_argument("--by", choices=["snr", "logg", "none"],
                   help="then RMSE, bias, R2, slope (and error-bar coverage) per S/N quartile or log g bin of the "
                        "test stars (default: snr for the report suite, none for the others)")
    r.set_defaults(func=cmd_report)

    ru = sub.add_parser("runs", help="list the runs in the registry")
    ru.add_argument("--failed", action="store_true")
    ru.set_defaults(func=cmd_runs)

    j = sub.add_parser("jobs", help="the job queue: submit, list, cancel, log")
    j.add_argument("action", choices=["submit", "list", "cancel", "log"])
    j.add_argument("id", nargs="?", type=int)
    j.add_argument("--suite", default="report", choices=list(SUITES))
    j.add_argument("--only")
    j.add_argument("--profile", default="quick", choices=list(config.PROFILES))
    j.add_argument("--dataset")
    j.add_argument("--seeds", type=int, default=None, help="training replicates per spec (as for train)")
    j.add_argument("--token-file", help="a file holding the admin token (when LOGG_ADMIN_TOKEN or "
                                        "LOGG_ADMIN_TOKEN_FILE is set on this machine); LOGG_TOKEN works too")
    j.add_argument("--token", help="the admin token on the command line (visible in `ps`: prefer --token-file)")
    j.add_argument("--no-worker", action="store_true", help="only queue; do not start a worker")
    j.set_defaults(func=cmd_jobs)

    dg = sub.add_parser("digest", help="the meeting digest (Markdown) from the registry")
    dg.add_argument("--profile", default="quick", choices=list(config.PROFILES))
    dg.add_argument("--dataset")
    dg.add_argument("--since", help="YYYY-MM-DD: mark questions answered by runs finished since then")
    dg.add_argument("--lang", default="en", choices=["en", "zh"])
    dg.add_argument("--out", help="write the Markdown to this file instead of printing it")
    dg.add_argument("--html", help="write an HTML file with the key charts (inline PNG) to this path")
    dg.set_defaults(func=cmd_digest)

    w = sub.add_parser("worker", help="run queued jobs one at a time (one worker per artifacts folder)")
    w.add_argument("--idle", type=float, default=20.0, help="exit after this many seconds with an empty queue")
    w.add_argument("--once", action="store_true", help="exit as soon as the queue is empty")
    w.add_argument("--lock-fd", type=int, help=argparse.SUPPRESS)   # the lock ensure_worker took for it
    w.set_defaults(func=cmd_worker)

    from core.predict import cli as predict_cli
    predict_cli.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    import sqlite3
    import warnings

    from core.data import DataError
    # one line per problem: numpy's RuntimeWarnings (a division by a zero error column, ...) are
    # not the user's to read; the answer or the error says what matters
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    a = build_parser().parse_args(argv)
    try:
        return a.func(a)
    except (DataError, ValueError, OSError) as e:   # OSError: missing files, read-only or full disks
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except sqlite3.Error as e:
        print(f"error: the run registry {config.registry_path()}: {_one_line(e)}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
