"""Summarise a ``py-spy record --gil --format raw`` profile (collapsed stacks) of a bench client.

    .venv/bin/python bench/gil_profile.py bench/results/profiles/efficiency-adaptive-*.gil.txt

With ``--gil`` py-spy samples only the thread holding the GIL, so the samples are the client's
serial time: what no other thread of the process can do meanwhile. Only the sending phase is
counted (``--all``: imports and set-up too). Prints the share per thread kind, the share of each
provider / library module and the top frames (inclusive and self). At py-spy's ``--rate 250`` one
sample is 4 ms of GIL time.
"""

from __future__ import annotations

import re
import sys
from collections import Counter


def frames(stack: str) -> list[str]:
    return stack.split(";")


def keep(stack: str) -> bool:
    """The batch's sending phase only: the collecting thread inside the pipeline, and every other
    thread (workers, journal writer, piece pool). Imports and set-up are left out."""
    return "TranscriptionPipeline.run" in stack or stack.startswith("Thread._bootstrap")


def main(path: str, top: int = 25) -> None:
    total = 0
    self_time: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    with open(path) as fh:
        lines = fh.read().splitlines()
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        if "--all" not in sys.argv and not keep(stack):
            continue
        total += n
        fs = frames(stack)
        thread = fs[0]
        # thread names look like "thread (0x7f..)" / "process 123:..."; group numbered names
        by_thread[re.sub(r"0x[0-9a-f]+|\d+", "#", thread)] += n
        self_time[fs[-1]] += n
        seen, seen_mod = set(), set()
        for f in fs[1:]:
            if f not in seen:
                inclusive[f] += n
                seen.add(f)
            m = re.search(r"\(([^)]*?)(?::\d+)?\)$", f)
            if m:
                file = m.group(1)
                mod = file.split("site-packages/")[-1].split("/")[0] if "site-packages" in file else file
                if "linkai_provider" in file:
                    mod = "linkai_provider/" + file.split("linkai_provider/")[-1]
                if mod not in seen_mod:
                    modules[mod] += n
                    seen_mod.add(mod)
    print(f"{total} samples with the GIL held ({path})\n")
    print("by thread:")
    for k, v in by_thread.most_common(8):
        print(f"  {v / total:6.1%}  {k}")
    print("\nby module (inclusive):")
    for k, v in modules.most_common(top):
        print(f"  {v / total:6.1%}  {k}")
    print("\ntop frames, inclusive:")
    for k, v in inclusive.most_common(top):
        print(f"  {v / total:6.1%}  {k}")
    print("\ntop frames, self:")
    for k, v in self_time.most_common(top):
        print(f"  {v / total:6.1%}  {k}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--all"]
    main(args[0], *(int(a) for a in args[1:2]))
