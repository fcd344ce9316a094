"""App benchmark through its public API: start-up of `python app.py` until the server answers, then Explain requests
(`/analyze`: detect, both models, three explanations each, faithfulness), another class (`/select_class`) and the
prior-correction slider let go (`/decide`) end to end with gradio_client. With `--browser`, also what a visitor waits
for in headless Chromium (Debian's, driven by Playwright; never downloaded): a first visit until the page is ready, and
the photo set on the page's file input until every visible panel is drawn and until the page's last event (the
settle step after each analysis) is done.

    python benchmarks/app_latency.py [--backbone resnet50] [--device cpu] [--runs 5] [--checkpoint C --baseline B]
                                     [--browser] [--json results/bench/FILE.json]

Without checkpoints, a random-init pair of `--backbone` is written to a temporary folder: speed does not depend on
the weights. Goals: start-up <= 15 s on CPU; one Explain request <= 1.5 s on 2 CPU cores, <= 100 ms on an H100.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PHOTO = REPO / "examples" / "astronaut.png"
# The slider's positions timed by /decide, round after round: after the first, the maps of each position's predicted
# class are in the session, so the median is a new decision's cost without explanations (a class explained for the
# first time adds what a /select_class costs).
DECIDE_TAUS, DECIDE_ROUNDS = (0.35, 0.7, 1.5, 0.0), 3
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu"]
# A new or removed photo sends two events: the analysis (app.py's on_new_photo), then its settle step (on_settled).
EVENTS_PER_PHOTO = 2
# The faithfulness table's last row is on the page, and every image the visitor can see has arrived and been decoded
# (hidden tabs' images are not waited for). Polled every 10 ms by wait_for_function: a locator's wait_for polls at up
# to 500 ms intervals, which rounds a timing up by as much.
PANELS_DRAWN = ("() => document.body.innerText.includes('random order (reference)') && [...document.images]"
                ".filter(i => i.checkVisibility()).every(i => i.complete && i.naturalWidth > 0)")


def random_pair(backbone: str, folder: Path) -> tuple[Path, Path]:
    """A random-init pair; it records equal training class counts, which the slider's decision rule needs."""
    from fer_explain.bench import random_checkpoint_file
    from fer_explain.classes import CLASSES

    extra = {"random_init": True, "data": {"train": {"class_counts": dict.fromkeys(CLASSES, 1)}}}
    return tuple(random_checkpoint_file(backbone, variant, folder, extra) for variant in ("full", "baseline"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--checkpoint")
    p.add_argument("--baseline")
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs", type=int, default=5, help="timed /analyze requests after one warm-up")
    p.add_argument("--browser", action="store_true", help="also time uploads in headless Chromium (needs Debian's "
                   "chromium and the playwright package)")
    p.add_argument("--json", help="also write the timings to this JSON file")
    args = p.parse_args()
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if args.browser:
        if importlib.util.find_spec("playwright") is None:
            p.error("--browser needs the playwright package: pip install -r requirements-dev.txt")
        if not CHROMIUM.exists():
            p.error(f"--browser needs Debian's chromium at {CHROMIUM}: apt-get install chromium")
    if bool(args.checkpoint) != bool(args.baseline):
        p.error("give --checkpoint and --baseline together, or neither (a random-init pair)")
    from fer_explain.errors import UserError
    from fer_explain.output_paths import check_output_file
    try:
        check_output_file(args.json, "--json")  # before minutes of timing, not after
    except UserError as e:
        p.error(str(e))
    tmp = Path(tempfile.mkdtemp(prefix="fer_app_bench_"))
    try:
        result = measure(args, tmp)
    except UserError as e:  # e.g. an unknown --backbone
        p.error(str(e))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a random-init resnet50 pair is ~220 MB
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


def measure(args, tmp: Path) -> dict:
    """Start the app on the pair, time start-up, `/analyze`, `/select_class` and `/decide`; stop it. The timings as a
    dict."""
    ckpt, base = (args.checkpoint, args.baseline) if args.checkpoint else random_pair(args.backbone, tmp)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, FER_CHECKPOINT=str(ckpt), FER_BASELINE=str(base), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1")
    result = {"checkpoint": str(ckpt), "baseline": str(base), "random_init": not args.checkpoint,
              "backbone": None if args.checkpoint else args.backbone, "device": args.device,
              "cpu_count": os.cpu_count(), "photo": PHOTO.name, "load_average_before": os.getloadavg()[0]}
    print(f"load average before: {result['load_average_before']:.2f}")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--device", args.device], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    sys.exit(f"app exited: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.1)
        result["startup_s"] = time.perf_counter() - start
        print(f"start-up until the first HTTP answer: {result['startup_s']:.2f} s")
        from gradio_client import Client, handle_file
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        times = []
        for i in range(args.runs + 1):  # the first request is a warm-up
            t = time.perf_counter()
            client.predict(handle_file(str(PHOTO)), False, "predicted", api_name="/analyze")
            times.append(time.perf_counter() - t)
        result["analyze_s"] = times  # the first is the warm-up
        result["analyze_median_s"] = statistics.median(times[1:])
        print(f"/analyze (1 face, both models, 3 explanations each): median {result['analyze_median_s']:.2f} s "
              f"over {args.runs} runs after 1 warm-up; all: {[round(x, 2) for x in times]}")
        times = []
        for cls in ("happy", "sad", "anger", "fear"):
            t = time.perf_counter()
            client.predict("1", cls, api_name="/select_class")
            times.append(time.perf_counter() - t)
        result["select_class_s"] = times
        result["select_class_median_s"] = statistics.median(times)
        print(f"/select_class (another class, both models): median {result['select_class_median_s']:.2f} s")
        times, labels = [], []
        for tau in DECIDE_TAUS * (1 + DECIDE_ROUNDS):  # the first round explains any class the slider makes predicted
            t = time.perf_counter()
            out = client.predict("1", "predicted", tau, api_name="/decide")
            times.append(time.perf_counter() - t)
            if str(out[0]).startswith("⚠️"):  # a refusal is not a timing
                sys.exit(f"/decide at tau {tau} was refused: {out[0]}")
            labels.append(out[2]["value"].split(":")[1].split()[0])  # "Face 1: happy 0.55" -> the predicted class
        result["decide_taus"], result["decide_s"], result["decide_labels"] = list(DECIDE_TAUS), times, labels
        result["decide_median_s"] = statistics.median(times[len(DECIDE_TAUS):])
        print(f"/decide (the slider let go at tau {DECIDE_TAUS}, predicted {labels[:len(DECIDE_TAUS)]}; maps already "
              f"computed): median {result['decide_median_s']:.2f} s over {DECIDE_ROUNDS} rounds after 1 warm-up; "
              f"all: {[round(x, 2) for x in times]}")
        if args.browser:
            result.update(browser_times(f"http://127.0.0.1:{port}/", args.runs))
        result["load_average_after"] = os.getloadavg()[0]
        print(f"load average after: {result['load_average_after']:.2f}")
    finally:
        proc.terminate()
        proc.wait()
    return result


def browser_times(url: str, runs: int) -> dict:
    """A visitor's wait in headless Chromium: one warm-up and `runs` timed first visits until the page is ready, then
    as many uploads of the photo: until every visible panel is drawn, and until the last event is done (the queue's
    data stream of the session closes when no event of it is pending; the settle step after each analysis runs after
    the panels arrive). The photo is removed between uploads, which empties the panels, so each upload is a new photo
    to the page."""
    from playwright.sync_api import sync_playwright

    queue = {"joins": 0, "open": 0}  # events sent; the session's data streams still open

    def count(request, change: int) -> None:
        if "/queue/join" in request.url and change > 0:
            queue["joins"] += 1
        elif "/queue/data" in request.url:
            queue["open"] += change

    def settle(page, joins_before: int) -> None:
        """Until both events of a photo change (the analysis, then its settle step) were sent and are done."""
        deadline = time.perf_counter() + 120
        while queue["joins"] < joins_before + EVENTS_PER_PHOTO or queue["open"] > 0:
            if time.perf_counter() > deadline:
                sys.exit(f"the page sent {queue['joins'] - joins_before} of {EVENTS_PER_PHOTO} events, or did not "
                         "finish them, in 120 s")
            page.wait_for_timeout(5)

    def open_page(browser):
        """A new page at `url` and the seconds until it is ready: the header drawn and the session's heartbeat
        connection open, as long before a visitor can pick a file."""
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("request", lambda r: count(r, 1))
        page.on("requestfinished", lambda r: count(r, -1))
        page.on("requestfailed", lambda r: count(r, -1))
        start = time.perf_counter()
        with page.expect_request(lambda r: "/gradio_api/heartbeat/" in r.url, timeout=60_000):
            page.goto(url, wait_until="domcontentloaded", timeout=60_000)
        page.wait_for_function("() => document.body.innerText.includes('Device:')", timeout=60_000, polling=10)
        return page, time.perf_counter() - start

    loads, drawn, settled = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for _ in range(runs + 1):  # a first visit each time: every page has a context, so a cache, of its own
                page, seconds = open_page(browser)
                loads.append(seconds)
                page.close()
            page, _ = open_page(browser)
            panels = page.get_by_text("random order (reference)").first
            for _ in range(runs + 1):
                start, joins = time.perf_counter(), queue["joins"]
                page.locator("input[type=file]").first.set_input_files(str(PHOTO))
                page.wait_for_function(PANELS_DRAWN, timeout=120_000, polling=10)
                drawn.append(time.perf_counter() - start)
                settle(page, joins)
                settled.append(time.perf_counter() - start)
                joins = queue["joins"]
                page.get_by_role("button", name="Remove Image").first.click()
                panels.wait_for(state="detached", timeout=60_000)
                settle(page, joins)
            version = browser.version
        finally:
            browser.close()
    result = {"browser": f"chromium {version}", "browser_load_s": loads,
              "browser_load_median_s": statistics.median(loads[1:]), "browser_drawn_s": drawn,
              "browser_settled_s": settled,
              "browser_drawn_median_s": statistics.median(drawn[1:]),
              "browser_settled_median_s": statistics.median(settled[1:])}
    print(f"in Chromium, a first visit until the page is ready: median {result['browser_load_median_s']:.2f} s over "
          f"{runs} loads after 1 warm-up; all: {[round(x, 2) for x in loads]}")
    print(f"in Chromium, the photo set until every panel is drawn: median {result['browser_drawn_median_s']:.2f} s, "
          f"until the last event is done: {result['browser_settled_median_s']:.2f} s, over {runs} runs after 1 "
          f"warm-up; all: {[round(x, 2) for x in drawn]}, {[round(x, 2) for x in settled]}")
    return result


if __name__ == "__main__":
    main()
