"""Table of many runs: mean ± std of dev/test PER over seeds per configuration.

python scripts/summarize_runs.py outputs/timit_ctc/multiruns/<time> --markdown results.md \
    --csv results.csv --plot results.png
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recipes.toolkit.run.summary import find_runs, load_run, plot, summarize, to_csv, to_markdown  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run directories or folders of runs")
    parser.add_argument("--markdown", type=Path, help="write the Markdown table here")
    parser.add_argument("--csv", type=Path, help="write the CSV table here")
    parser.add_argument("--plot", type=Path, help="write a bar chart (PNG) here")
    args = parser.parse_args(argv)

    records = [load_run(path) for path in find_runs(args.paths)]
    if not records:
        parser.error("no run directories (with .hydra/config.yaml) found")
    rows = summarize(records)
    failed = [r for r in records if not r.ok]
    markdown = to_markdown(rows, failed)
    print(markdown, end="")
    if args.markdown:
        args.markdown.write_text(markdown)
    if args.csv:
        args.csv.write_text(to_csv(rows, failed))
    if args.plot and rows:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
