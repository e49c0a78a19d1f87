"""Capture the screenshots in this folder: the web app's main views and the validation report.

Which question: what does a person see when they open ``ioaware app`` or a validation report?
Writes ``app_*.png``, ``report_*.png`` and ``sizing_roofline_a100.png`` beside this file (or
into ``--out``). Needs the
``app`` extra, selenium, and Debian's chromium and chromium-driver; no GPU.

    python3 docs/screenshots/capture.py [--out DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars")


def browser(width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = "/usr/bin/chromium"
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--window-size={width},{height}")
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='ioaware-shot-')}")
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def wait_for(driver, css: str, text_not: str = "-", timeout: float = 30.0):
    from selenium.webdriver.common.by import By

    end = time.time() + timeout
    while time.time() < end:
        els = driver.find_elements(By.CSS_SELECTOR, css)
        if els and els[0].text.strip() not in ("", text_not):
            return els[0]
        time.sleep(0.2)
    raise TimeoutError(f"{css} did not fill in {timeout} s")


def shoot_element(driver, css: str, path: Path) -> None:
    from selenium.webdriver.common.by import By

    el = driver.find_element(By.CSS_SELECTOR, css)
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", el)
    time.sleep(0.5)
    el.screenshot(str(path))
    print("wrote", path)


def app_shots(out: Path, port: int = 8071) -> None:
    sys.path.insert(0, str(ROOT))
    from costmodel.app import create_app
    from selenium.webdriver.common.by import By

    app = create_app()
    threading.Thread(target=lambda: app.run(port=port, debug=False), daemon=True).start()
    time.sleep(2)
    driver = browser(1500, 1900)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait_for(driver, "#summary-time")
        time.sleep(2)  # plotly draws after the numbers arrive
        driver.save_screenshot(str(out / "app_overview.png"))
        print("wrote", out / "app_overview.png")
        for key in ("ops", "timeline", "memory", "roofline", "attention"):
            shoot_element(driver, f".panel-{key}", out / f"app_{key}.png")
        driver.find_element(By.CSS_SELECTOR, "#phase input[value='train']").click()
        time.sleep(3)
        shoot_element(driver, ".panel-timeline", out / "app_timeline_train.png")
        from costmodel.app.serving_view import available

        if available():  # the serving simulator is in this build
            driver.find_element(By.CSS_SELECTOR, "#phase input[value='serving']").click()
            time.sleep(4)
            shoot_element(driver, ".panel-serving", out / "app_serving.png")
    finally:
        driver.quit()


def parallel_shot(out: Path, port: int = 8072) -> None:
    """The parallelism panel for a decode step on 2 x 2 GPUs, where costmodel.parallel is installed."""
    sys.path.insert(0, str(ROOT))
    from costmodel.app import create_app
    from costmodel.app.inputs import AppInputs
    from costmodel.app.parallel_view import available

    if not available():
        return
    app = create_app(AppInputs(phase="decode", batch=16, tensor_parallel=2, pipeline_parallel=2))
    threading.Thread(target=lambda: app.run(port=port, debug=False), daemon=True).start()
    time.sleep(2)
    driver = browser(1500, 1900)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait_for(driver, "#summary-time")
        time.sleep(2)
        shoot_element(driver, ".panel-parallel", out / "app_parallel.png")
    finally:
        driver.quit()


def report_shots(out: Path) -> None:
    html = out / "report.html"
    subprocess.run([sys.executable, "-m", "costmodel.cli", "report", str(ROOT / "costmodel/validation/results/h200-validation.json"),
                    "--out", str(html), "--no-png"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    driver = browser(1200, 5200)
    try:
        driver.get(html.as_uri())
        time.sleep(3)
        driver.save_screenshot(str(out / "report_top.png"))
        print("wrote", out / "report_top.png")
        shoot_element(driver, "#roofline", out / "report_roofline.png")
    finally:
        driver.quit()
        html.unlink(missing_ok=True)


def sizing_shot(out: Path) -> None:
    """The sizing report's roofline, with its decode steps and the lecture's examples named."""
    folder = Path(tempfile.mkdtemp(prefix="ioaware-sizing-"))
    subprocess.run([sys.executable, "-m", "costmodel.cli", "sizing", "--out", str(folder)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    driver = browser(1100, 760)
    try:
        driver.get((folder / "sizing-roofline-a100-sxm4-80gb.html").as_uri())
        time.sleep(3)
        driver.save_screenshot(str(out / "sizing_roofline_a100.png"))
        print("wrote", out / "sizing_roofline_a100.png")
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    parser.add_argument("--only", choices=("app", "report", "sizing"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "app"):
        app_shots(args.out)
        parallel_shot(args.out)
    if args.only in (None, "report"):
        report_shots(args.out)
    if args.only in (None, "sizing"):
        sizing_shot(args.out)


if __name__ == "__main__":
    main()
