"""How fast each page of the app paints once the runs are cached, in a real browser.

    LOGG_ARTIFACTS=/path/with/runs python benchmarks/bench_pages.py --profile default

Starts `streamlit run app.py` on a free port (the browser test's starter, tests/test_browser.py) (LOGG_PROFILE=PROFILE, so the sidebar opens on that
profile's runs), opens every page of the sidebar navigation in headless Debian chromium
(Playwright) and records, per page:
  - first paint: from page.goto() to the page's title (h1) on screen, the whole app reloaded
    (JavaScript bundle, websocket, script run);
  - complete: from page.goto() until the script has stopped running (Streamlit's status widget
    gone), i.e. every chart and table drawn.
Two passes: the first on the freshly started server (every Python cache cold), the second with
Streamlit's caches warm (what a second visitor sees). Writes <!-- bench_pages:start --> in
docs/benchmarks.md. Needs Playwright and chromium (the test suite's browser test needs them too).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import cpu_model  # noqa: E402
from bench_engine import write_section  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from test_browser import ARGS, CHROMIUM, _app  # noqa: E402  (the browser test's app starter and chromium flags)


def wait_done(page, timeout: float = 120.0, quiet: float = 1.0) -> float:
    """Seconds until the status widget has been gone for `quiet` s (returned without the quiet time)."""
    t0, since = time.perf_counter(), None
    while time.perf_counter() - t0 < timeout:
        if page.query_selector("[data-testid='stStatusWidget']"):
            since = None
        elif since is None:
            since = time.perf_counter()
        elif time.perf_counter() - since > quiet:
            return since
        time.sleep(0.05)
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="quick")
    a = ap.parse_args()
    import tempfile

    from playwright.sync_api import sync_playwright
    os.environ.update(LOGG_PROFILE=a.profile)   # the sidebar opens on this profile's runs
    results: dict[str, list] = {}
    log_path = Path(tempfile.mkdtemp(prefix="bench_pages_")) / "streamlit.log"
    folder = Path(os.environ.get("LOGG_ARTIFACTS") or ROOT / "artifacts")
    with _app(folder, log_path) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(base + "/")
        page.wait_for_selector("[data-testid='stSidebarNav']", timeout=60_000)
        links = []
        for el in page.query_selector_all("[data-testid='stSidebarNav'] a, [data-testid='stSidebarNavLink']"):
            href = el.get_attribute("href")
            if href and href.startswith(base) and href not in links:
                links.append(href)
        wait_done(page)
        for pass_ in range(2):
            for url in links:
                t0 = time.perf_counter()
                page.goto(url)
                h1 = page.wait_for_selector("h1", timeout=60_000)
                t_paint = time.perf_counter() - t0
                t_done = wait_done(page) - t0
                name = h1.inner_text().strip() or url[len(base):]
                results.setdefault(name, [None, None])[pass_] = (t_paint, t_done)
        browser.close()

    def sec(v: float) -> str:
        return "> 120" if v != v else f"{v:.2f}"   # NaN: the script did not go quiet within wait_done's 120 s

    rows = [f"| {n} | {sec(c[0])} | {sec(c[1])} | {sec(w[0])} | {sec(w[1])} |" for n, (c, w) in results.items()]
    lines = ["## Page paint times (browser)", "",
             f"Measured {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({cpu_model()}), "
             f"headless chromium, profile `{a.profile}` with its runs cached, "
             f"`python benchmarks/bench_pages.py --profile {a.profile}`. Seconds from page.goto() (a full app "
             "reload) to the page title on screen (first paint) and to the script's end (every chart drawn). "
             "Cold: first visit after the server started; warm: second visit.", "",
             "| page | first paint, cold [s] | complete, cold [s] | first paint, warm [s] | complete, warm [s] |",
             "|---|---|---|---|---|", *rows]
    write_section("bench_pages", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
