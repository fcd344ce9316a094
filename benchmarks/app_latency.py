"""App benchmark through its public API: start-up of `python app.py` until the server answers, then Explain requests
(`/analyze`: detect, both models, three explanations each, faithfulness) end to end with gradio_client.

    python benchmarks/app_latency.py [--backbone resnet50] [--device cpu] [--runs 5] [--checkpoint C --baseline B]

Without checkpoints, a random-init pair of `--backbone` is written to a temporary folder: speed does not depend on
the weights. Goals: start-up <= 15 s on CPU; one Explain request <= 1.5 s on 2 CPU cores, <= 100 ms on an H100.
"""
from __future__ import annotations

import argparse
import os
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


def random_pair(backbone: str, folder: Path) -> tuple[Path, Path]:
    import torch

    from fer_explain.checkpoint import save_checkpoint
    from fer_explain.config import ModelConfig, Preprocessing
    from fer_explain.model import build_model

    torch.manual_seed(0)
    return tuple(save_checkpoint(folder / f"{backbone}_{v}.safetensors",
                                 build_model(ModelConfig(backbone=backbone, variant=v)).eval(), Preprocessing())
                 for v in ("full", "baseline"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--checkpoint")
    p.add_argument("--baseline")
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fer_app_bench_"))
    ckpt, base = (args.checkpoint, args.baseline) if args.checkpoint else random_pair(args.backbone, tmp)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, FER_CHECKPOINT=str(ckpt), FER_BASELINE=str(base), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
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
        print(f"start-up until the first HTTP answer: {time.perf_counter() - start:.2f} s")
        from gradio_client import Client, handle_file
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        times = []
        for i in range(args.runs + 1):  # the first request is a warm-up
            t = time.perf_counter()
            client.predict(handle_file(str(PHOTO)), False, "predicted", api_name="/analyze")
            times.append(time.perf_counter() - t)
        print(f"/analyze (1 face, both models, 3 explanations each): median {statistics.median(times[1:]):.2f} s "
              f"over {args.runs} runs after 1 warm-up; all: {[round(x, 2) for x in times]}")
        times = []
        for cls in ("happy", "sad", "anger", "fear"):
            t = time.perf_counter()
            client.predict("1", cls, api_name="/select_class")
            times.append(time.perf_counter() - t)
        print(f"/select_class (another class, both models): median {statistics.median(times):.2f} s")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
