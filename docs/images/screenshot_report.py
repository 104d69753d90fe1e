"""Re-take docs/images/report.png, the README's picture, after `make run`.

    .venv/bin/python docs/images/screenshot_report.py

Opens the newest data/reports/<as_of>/index.html in Debian's headless Chromium (the browser tests'
setup) and saves the top of the page at 1440 px wide, and the sections the docs show
(report_<section>.png). `--report PATH` takes another page.
"""

from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
# Without the background-networking flags Chromium keeps dialling Google on a closed network.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


SECTIONS = ("kpis", "recommendations", "experiments")


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--report", type=Path, help="a report page (default: the newest under data/reports/)")
    args = ap.parse_args()
    pages = [args.report] if args.report else sorted((ROOT / "data" / "reports").glob("*/index.html"))
    if not pages:
        raise SystemExit("No report under data/reports/: run `make run` first.")
    out = Path(__file__).with_name("report.png")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 960})
        page.goto(pages[-1].resolve().as_uri())
        page.screenshot(path=str(out))
        for section in SECTIONS:
            page.locator(f"#{section}").screenshot(path=str(out.with_name(f"report_{section}.png")))
        browser.close()
    print(f"{out} and {', '.join(f'report_{s}.png' for s in SECTIONS)} from {pages[-1]}")


if __name__ == "__main__":
    main()
