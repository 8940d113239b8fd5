"""A bare PyTorch script of the seed MNIST recipe, imports included, as a user would write it:
784-50-10, ReLU, weights 0.01*randn, softmax cross-entropy, SGD lr 0.1, batch 100 drawn with
replacement, 10000 iterations, float32; test accuracy at the end.

    python benchmarks/mnist_torch_script.py [--data DIR] [--threads N] [--iterations N]

Self-contained on purpose (only stdlib, numpy, torch): its wall time is the baseline of
``python -m runner +experiment=mnist`` end to end.
"""

import argparse
import gzip
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

began = time.perf_counter()
parser = argparse.ArgumentParser()
parser.add_argument("--data", default=os.environ.get("RUNNER_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
parser.add_argument("--threads", type=int, default=None)
parser.add_argument("--iterations", type=int, default=10000)
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)


def idx(name: str) -> np.ndarray:
    with gzip.open(Path(args.data) / "mnist" / name) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


x = torch.from_numpy(idx("train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255)
y = torch.from_numpy(idx("train-labels-idx1-ubyte.gz").astype(np.int64))
x_test = torch.from_numpy(idx("t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255)
y_test = torch.from_numpy(idx("t10k-labels-idx1-ubyte.gz").astype(np.int64))
order = torch.from_numpy(np.random.default_rng(0).permutation(len(x)))
x, y = x[order[5000:]], y[order[5000:]]  # 5000 held out for validation, as the runner does

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))
with torch.no_grad():
    for layer in (model[0], model[2]):
        nn.init.normal_(layer.weight, 0.0, 0.01)
        layer.bias.zero_()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
trained = time.perf_counter()
for step in range(args.iterations):
    i = torch.randint(0, len(x), (100,))
    loss = F.cross_entropy(model(x[i]), y[i])
    opt.zero_grad()
    loss.backward()
    opt.step()
    if (step + 1) % 1000 == 0:
        print(f"step {step + 1} loss {loss.item():.4f}", flush=True)
trained = time.perf_counter() - trained
with torch.no_grad():
    accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
print(f"test accuracy {accuracy:.4f}  training {trained:.2f} s  script {time.perf_counter() - began:.2f} s (after imports)")
