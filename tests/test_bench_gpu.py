"""benchmarks/bench_gpu.py on a machine whose TensorFlow sees no GPU: one sentence, exit 0."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def test_bench_gpu_without_a_gpu_says_so_in_one_line_and_exits_0(tmp_path):
    tf = pytest.importorskip("tensorflow")
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("TensorFlow sees a GPU here: the benchmark would run")
    env = {**os.environ, "PATCHHEAT_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "bench_gpu.py needs a GPU that TensorFlow sees, and TensorFlow sees none here: nothing "
        "measured (run it on a GPU machine; --cpu-check tries the script on a CPU)."]
    assert list(tmp_path.iterdir()) == []  # nothing generated, nothing run
