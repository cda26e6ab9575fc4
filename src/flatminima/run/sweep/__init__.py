"""Sweeps: a grid of parameters times seeds, each point one per-seed run, submitted through submitit.

A sweep of claim ``C`` over a grid ``{lr: [0.1, 0.05], batch_size: [64, 512]}`` and seeds
``0..2`` has 2 x 2 x 3 = 12 *points*; a point is one call of the claim's per-seed function
``run_seed(params, seed, device)`` (the unit of work of :mod:`flatminima.protocol.replicates`) with
``params`` = the preset, the fixed overrides and the point's grid values (validated for every
grid cell before anything is submitted).

The points run through submitit (Facebook's job-submission library), with the
same code on a laptop and on a cluster:

* ``executor="local"``: :class:`submitit.LocalExecutor`, processes with one torch thread each
  (the thread policy of :mod:`flatminima.core.device`), at most ``max_parallel`` at once; by default
  one job per worker, each running its share of the points in turn (a process start-up costs
  about 2 CPU s of imports, as much as a smoke point);
* ``executor="slurm"``: :class:`submitit.SlurmExecutor`, the points submitted as Slurm job
  arrays (``array_parallelism = max_parallel``, one point per array task unless
  ``points_per_job`` says otherwise) on a partition, with GPUs if asked for.

Each finished point is written atomically in the per-seed cache format of
:mod:`flatminima.protocol.cache` (``<cache>/<claim>/seed-<seed>-<key>.json``, ``key`` =
:func:`flatminima.protocol.cache.seed_key`, so a sweep and a notebook can share a cache), by the
worker itself: re-running an interrupted sweep computes only the missing points. A point that
raises is retried ``retries`` times, then reported with its error; the other points go on.

The outputs (:func:`write_outputs`) in the sweep's folder, by default
``book/generated/sweeps/<name>/``:

* ``points.parquet`` / ``points.csv``: the tidy table, one row per point (grid values, seed,
  status, error, cost, and every scalar top-level field of the per-seed record);
* ``cells.parquet`` / ``cells.csv``: per grid cell, long form: the claim's own statistics from
  its ``aggregate(params, records)`` where it gives a headline, and for every numeric
  top-level record field the mean over seeds with a Student-t 95% interval
  (:func:`flatminima.stats.intervals.mean_ci`);
* ``figure.svg`` and ``index.md``: the sweep page for the book (the primary statistic against
  each grid parameter, with intervals), generated from the table;
* ``sweep.json``: the manifest (claim, preset, grid, seeds, points and their status).

The package: :mod:`~flatminima.run.sweep.grid` (the grid, its cells and points),
:mod:`~flatminima.run.sweep.execute` (the executors and the runs of points) and
:mod:`~flatminima.run.sweep.report` (the tables, the figure, the page, the book's Sweeps part);
their public names are re-exported here.
"""
from __future__ import annotations

from flatminima.run.sweep.execute import EXECUTORS, Outcome, make_executor, run, run_point, run_points
from flatminima.run.sweep.grid import (
    NOT_GRIDDABLE,
    Point,
    Sweep,
    default_name,
    load_point,
    parse_grid,
    plan,
    record_path,
)
from flatminima.run.sweep.report import (
    SWEEPS_DIR,
    cells_table,
    claim_statistics,
    page_markdown,
    plot,
    points_table,
    sweep_pages,
    toc_part,
    write_outputs,
)

__all__ = ["EXECUTORS", "NOT_GRIDDABLE", "SWEEPS_DIR", "Outcome", "Point", "Sweep", "cells_table", "claim_statistics",
           "default_name", "load_point", "make_executor", "page_markdown", "parse_grid", "plan", "plot", "points_table",
           "record_path", "run", "run_point", "run_points", "sweep_pages", "toc_part", "write_outputs"]
