"""Each test file's time, from a pytest JUnit XML report: the numbers of tests/README.md's table.

    python3 tasks.py test --junitxml=times.xml
    .venv/bin/python tools/test_times.py times.xml

A file's time is the sum of its tests' times (set-up and tear-down included), so under
pytest-xdist it is the time the file keeps a worker busy, not when it ends; on a machine
busy with other work it grows. Its CPU is the sum of its tests' CPU-seconds (the
``cpu_seconds`` property tests/conftest.py records: the worker's own and that of the
processes it started and saw end), which other work on the machine hardly changes.
"""

from __future__ import annotations

import argparse
import collections
import xml.etree.ElementTree as ET


def file_times(report: str) -> dict[str, tuple[float, float, int]]:
    """test file -> (seconds, CPU-seconds, number of tests), most CPU first."""
    seconds: collections.Counter[str] = collections.Counter()
    cpu: collections.Counter[str] = collections.Counter()
    counts: collections.Counter[str] = collections.Counter()
    for case in ET.parse(report).iter("testcase"):
        parts = case.get("classname", "").split(".")  # tests.test_x, or tests.test_x.TestClass
        name = next((p for p in parts if p.startswith("test_")), parts[-1]) + ".py"
        seconds[name] += float(case.get("time", 0))
        cpu[name] += sum(float(p.get("value", 0)) for p in case.iter("property") if p.get("name") == "cpu_seconds")
        counts[name] += 1
    order = sorted(seconds, key=lambda name: (cpu[name], seconds[name]), reverse=True)
    return {name: (seconds[name], cpu[name], counts[name]) for name in order}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", help="a JUnit XML report written by pytest --junitxml")
    times = file_times(parser.parse_args().report)
    print("| file | tests | time | CPU |\n|---|---|---|---|")
    for name, (total, cpu, count) in times.items():
        print(f"| `{name}` | {count} | {total:.0f} s | {cpu:.0f} s |")
    tests, total, cpu = (sum(column) for column in zip(*((c, t, u) for t, u, c in times.values()), strict=True))
    print(f"| all | {tests:.0f} | {total:.0f} s | {cpu:.0f} s |")


if __name__ == "__main__":
    main()
