"""How long `metis --help` and `metis data --help` take (a fresh Python process each, median of --runs), and
whether torch was imported on the way (it must not be: that is what keeps them fast; tests/test_cli.py
checks the import, this prints the time).

    python bench/cli_startup.py --runs 5
"""

import argparse
import statistics
import subprocess
import sys
import time

CODE = (
    "import sys; from metis_cli.cli import app\n"
    "try:\n    app({argv!r})\nexcept SystemExit:\n    pass\n"
    "print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr)"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print("| command | median s | min s | max s | torch |\n|---|---:|---:|---:|---|")
    for argv in (["--help"], ["data", "--help"], ["--version"]):
        times, torch_state = [], ""
        for _ in range(args.runs):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", CODE.format(argv=argv)], capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            torch_state = proc.stderr.strip().splitlines()[-1]
        print(
            f"| metis {' '.join(argv)} | {statistics.median(times):.3f} | {min(times):.3f} | {max(times):.3f} | "
            f"{torch_state} |"
        )


if __name__ == "__main__":
    main()
