"""``python -m fastloss cache [--clear]``: where the compiled kernels are, and their size."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def _size(path: Path) -> tuple[int, int]:
    total = files = 0
    for item in path.rglob("*"):
        if item.is_file():
            files += 1
            total += item.stat().st_size
    return total, files


def _human(size: float) -> str:
    if size < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastloss cache",
        description="Show where fastloss caches its compiled kernels and how much they take; "
        "--clear empties the cache (kernels compile again on their next call). The directory "
        "is $FASTLOSS_CACHE_DIR if set, else the user's cache directory.",
    )
    parser.add_argument("--clear", action="store_true", help="remove every cached kernel")
    args = parser.parse_args(argv)

    from fastloss.kernels import _cache

    current = _cache.directory()
    if current is None:
        print("no writable cache directory: kernels compile for each process only")
        return 0
    root = current.parent
    leaves = sorted(p for p in root.glob("kernels-*") if p.is_dir())
    if args.clear:
        for leaf in leaves:
            shutil.rmtree(leaf, ignore_errors=True)
        print(f"cleared {root} ({len(leaves)} kernel directories)")
        return 0
    print(f"cache: {root}")
    grand = 0
    for leaf in leaves:
        size, files = _size(leaf)
        grand += size
        mark = "  (this installation)" if leaf == current else ""
        print(f"  {leaf.name}  {_human(size)} in {files} files{mark}")
    print(f"total: {_human(grand)}")
    return 0
