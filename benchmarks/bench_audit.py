"""The audit log at scale: appends, checkpoints and verify at 10^4, 10^6 and 10^7 entries.

For each size, a fresh log in a temporary directory is filled with small entries
through ``append_many`` in big batches (``checkpoint_every=0``, so appends are timed
alone), signed at each quarter of the size (``checkpoint()`` timed each time), and
then verified with ``verify``. Printed: appends/s, the checkpoint time at the full
size, and the verify time.

The baseline, in the same run and on the same files, is the previous approach: a
checkpoint recomputed the whole tree (``_merkle.root`` over every leaf hash), and
verify recomputed the root and a consistency proof from all leaves for every
checkpoint. It runs at the sizes up to ``--baseline-max`` (10^6 by default; at 10^7
it would need minutes and gigabytes).

A size whose estimated time (from the previous size's rates) exceeds ``--budget``
seconds is skipped, with the estimate printed, rather than run.

Usage: python benchmarks/bench_audit.py [--sizes 10000 1000000 10000000]
       [--batch 10000] [--budget 300] [--baseline-max 1000000]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from predlog.audit import AuditLog, _merkle, verify
from predlog.audit._store import ReadOnlyStore

KEY = bytes(range(32))


@dataclass(frozen=True)
class Figures:
    """What one size measured: seconds unless named otherwise."""

    size: int
    append_s: float
    checkpoint_s: float
    verify_s: float


def _fill(path: Path, size: int, batch: int) -> tuple[float, float]:
    """Append ``size`` small entries in batches, checkpointing at each quarter.

    Returns the append time alone and the last (full-size) checkpoint's time.
    """
    quarters = {size * q // 4 for q in (1, 2, 3, 4)}
    append_s = checkpoint_s = 0.0
    with AuditLog(path, signing_key=KEY, checkpoint_every=0) as log:
        done = 0
        while done < size:
            step = min(batch, size - done)
            entries = [{"n": done + i} for i in range(step)]
            start = time.perf_counter()
            log.append_many(entries)
            append_s += time.perf_counter() - start
            done += step
            if done in quarters or any(done - step < q < done for q in quarters):
                start = time.perf_counter()
                log.checkpoint()
                checkpoint_s = time.perf_counter() - start
    return append_s, checkpoint_s


def _verify(path: Path) -> float:
    """Time ``verify``, which must pass."""
    public = (path / "public_key.hex").read_text().strip()
    start = time.perf_counter()
    report = verify(path, public_key=public)
    elapsed = time.perf_counter() - start
    if not report.ok:
        raise SystemExit(f"verify failed: {report.problem}")
    return elapsed


def measure(size: int, batch: int, *, baseline: bool) -> tuple[Figures, Baseline | None]:
    """One size, from an empty directory to a verified log (and the baseline on it)."""
    root = Path(tempfile.mkdtemp(prefix="bench_audit_"))
    try:
        append_s, checkpoint_s = _fill(root / "log", size, batch)
        verify_s = _verify(root / "log")
        before = _baseline(root / "log", size) if baseline else None
        return Figures(size, append_s, checkpoint_s, verify_s), before
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Baseline:
    """The previous approach's tree work on the same files, in seconds."""

    checkpoint_s: float
    verify_trees_s: float
    checkpoints: int


def _baseline(path: Path, size: int) -> Baseline:
    """The previous approach on the same files: full root per checkpoint, and per
    checkpoint in verify a full root plus a consistency proof from all leaves."""
    leaves = [r.leaf_hash for r in ReadOnlyStore(path).records()]
    start = time.perf_counter()
    top = _merkle.root(leaves)
    checkpoint_s = time.perf_counter() - start
    sizes = sorted({size * q // 4 for q in (1, 2, 3, 4)})
    start = time.perf_counter()
    previous: tuple[int, bytes] | None = None
    for n in sizes:
        current = _merkle.root(leaves[:n])
        if previous is not None:
            proof = _merkle.consistency_proof(previous[0], leaves[:n])
            if not _merkle.verify_consistency(previous[0], n, previous[1], current, proof):
                raise SystemExit(f"baseline: no consistency from {previous[0]} to {n}")
        previous = (n, current)
    verify_trees_s = time.perf_counter() - start
    if current != top:
        raise SystemExit("baseline: the two full recomputations disagree")
    return Baseline(checkpoint_s, verify_trees_s, len(sizes))


def _report(figures: Figures, base: Baseline | None) -> None:
    rate = figures.size / figures.append_s
    print(
        f"{figures.size:>10,} entries: {rate:10,.0f} appends/s, "
        f"checkpoint {figures.checkpoint_s * 1e3:8.2f} ms, verify {figures.verify_s:8.2f} s "
        f"({figures.size / figures.verify_s:,.0f} entries/s)"
    )
    if base is not None:
        print(
            f"  previous full recompute: checkpoint {base.checkpoint_s * 1e3:8.2f} ms "
            f"({base.checkpoint_s / figures.checkpoint_s:,.1f}x the incremental one); "
            f"verify's tree work alone for {base.checkpoints} checkpoints "
            f"{base.verify_trees_s:.2f} s, on top of the pass over the entries "
            f"(whole incremental verify: {figures.verify_s:.2f} s)"
        )


def _estimate(previous: Figures, size: int) -> float:
    """Seconds a larger size would take at the previous size's per-entry rates."""
    scale = size / previous.size
    return (previous.append_s + previous.verify_s) * scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10**4, 10**6, 10**7])
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--budget", type=float, default=300.0)
    parser.add_argument("--baseline-max", type=int, default=1_000_000)
    args = parser.parse_args()
    previous: Figures | None = None
    for size in args.sizes:
        if previous is not None and _estimate(previous, size) > args.budget:
            print(
                f"{size:>10,} entries: skipped, would need about "
                f"{_estimate(previous, size):,.0f} s (budget {args.budget:,.0f} s)"
            )
            continue
        previous, base = measure(size, args.batch, baseline=size <= args.baseline_max)
        _report(previous, base)


if __name__ == "__main__":
    main()
