"""No import reaches for the network: albumentations' update check (it asks PyPI when imported) is switched off by
importing the runtime, in the runtime and in the builder alike. An audit hook records every socket a fresh
interpreter would open; the control shows that it sees albumentations' check when the switch is not set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys, threading, time
events = []
def hook(event, args):
    if event in ("socket.__new__", "socket.connect", "socket.getaddrinfo", "urllib.Request"):
        events.append(event)
sys.addaudithook(hook)
for name in sys.argv[1:]:
    __import__(name)
time.sleep(1.0)  # a check started in a thread has had its time
print("EVENTS " + json.dumps(events))
"""


def sockets_opened(*modules: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_ALBUMENTATIONS_UPDATE", "HF_HUB_OFFLINE")}
    proc = subprocess.run([sys.executable, "-c", PROBE, *modules], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300, check=True)
    line = next(line for line in proc.stdout.splitlines() if line.startswith("EVENTS "))
    return json.loads(line[len("EVENTS "):])


def test_importing_the_runtime_the_builder_and_albumentations_opens_no_socket():
    assert sockets_opened("submission", "submission.runner", "albumentations", "builder.cli", "builder.pack.bundle") == []


def test_the_probe_sees_albumentations_update_check_without_the_switch():
    assert sockets_opened("albumentations"), "the audit hook saw no socket: the test above could not fail"


ENGINES = """
import json, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch
graph = Path(tempfile.mkdtemp()) / "m.onnx"
torch.onnx.export(torch.nn.Linear(4, 2), (torch.zeros(1, 4),), str(graph), input_names=["image"],
                  output_names=["logits"], dynamo=False)
events = []
def hook(event, args):
    if event in ("socket.__new__", "socket.connect", "socket.getaddrinfo", "urllib.Request"):
        events.append(event)
sys.addaudithook(hook)
from submission.models.engines import open_engine
for name in ("onnx", "openvino"):
    open_engine(name, graph, torch.device("cpu"), 1)(np.ones((1, 4), dtype=np.float32))
time.sleep(1.0)
print("EVENTS " + json.dumps(events))
"""


def test_opening_and_running_each_engine_opens_no_socket():
    proc = subprocess.run([sys.executable, "-c", ENGINES], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          check=True)
    line = next(line for line in proc.stdout.splitlines() if line.startswith("EVENTS "))
    assert json.loads(line[len("EVENTS "):]) == []
