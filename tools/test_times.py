"""Each test file's time, from a pytest JUnit XML report: the numbers of tests/README.md's table.

    python3 tasks.py test --junitxml=times.xml
    .venv/bin/python tools/test_times.py times.xml

A file's time is the sum of its tests' times (set-up and tear-down included), so under
pytest-xdist it is the time the file keeps a worker busy, not when it ends.
"""

from __future__ import annotations

import argparse
import collections
import xml.etree.ElementTree as ET


def file_times(report: str) -> dict[str, tuple[float, int]]:
    """test file -> (seconds, number of tests), slowest first."""
    seconds: collections.Counter[str] = collections.Counter()
    counts: collections.Counter[str] = collections.Counter()
    for case in ET.parse(report).iter("testcase"):
        parts = case.get("classname", "").split(".")  # tests.test_x, or tests.test_x.TestClass
        name = next((p for p in parts if p.startswith("test_")), parts[-1]) + ".py"
        seconds[name] += float(case.get("time", 0))
        counts[name] += 1
    return {name: (total, counts[name]) for name, total in seconds.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", help="a JUnit XML report written by pytest --junitxml")
    times = file_times(parser.parse_args().report)
    print("| file | tests | time |\n|---|---|---|")
    for name, (total, count) in times.items():
        print(f"| `{name}` | {count} | {total:.0f} s |")
    print(f"| all | {sum(c for _, c in times.values())} | {sum(t for t, _ in times.values()):.0f} s |")


if __name__ == "__main__":
    main()
