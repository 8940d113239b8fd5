"""A bare hand-written NumPy script of the seed MNIST recipe, imports included: 784-50-10, ReLU,
weights 0.01*randn, softmax cross-entropy, SGD lr 0.1, batch 100 drawn with replacement,
10000 iterations, float32; test accuracy at the end.

    python benchmarks/mnist_numpy_script.py [--data DIR] [--threads N] [--iterations N]
"""

import argparse
import gzip
import os
import time
from pathlib import Path

import numpy as np

began = time.perf_counter()
parser = argparse.ArgumentParser()
parser.add_argument("--data", default=os.environ.get("RUNNER_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
parser.add_argument("--threads", type=int, default=None)
parser.add_argument("--iterations", type=int, default=10000)
args = parser.parse_args()
if args.threads:
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads, user_api="blas")


def idx(name: str) -> np.ndarray:
    with gzip.open(Path(args.data) / "mnist" / name) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


x = idx("train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255
y = idx("train-labels-idx1-ubyte.gz").astype(np.int64)
x_test = idx("t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255
y_test = idx("t10k-labels-idx1-ubyte.gz").astype(np.int64)
order = np.random.default_rng(0).permutation(len(x))
x, y = x[order[5000:]], y[order[5000:]]  # 5000 held out for validation, as the runner does

rng = np.random.default_rng(0)
W1 = (0.01 * rng.standard_normal((784, 50))).astype(np.float32)
b1 = np.zeros(50, np.float32)
W2 = (0.01 * rng.standard_normal((50, 10))).astype(np.float32)
b2 = np.zeros(10, np.float32)
lr, B = 0.1, 100
rows = np.arange(B)
trained = time.perf_counter()
for step in range(args.iterations):
    i = rng.integers(0, len(x), B)
    xb, yb = x[i], y[i]
    h = xb @ W1 + b1
    np.maximum(h, 0, out=h)
    z = h @ W2 + b2
    z -= z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -logp[rows, yb].mean()
    dz = np.exp(logp)
    dz[rows, yb] -= 1
    dz /= B
    dW2, db2 = h.T @ dz, dz.sum(axis=0)
    dh = dz @ W2.T
    dh *= h > 0
    dW1, db1 = xb.T @ dh, dh.sum(axis=0)
    W1 -= lr * dW1
    b1 -= lr * db1
    W2 -= lr * dW2
    b2 -= lr * db2
    if (step + 1) % 1000 == 0:
        print(f"step {step + 1} loss {loss:.4f}", flush=True)
trained = time.perf_counter() - trained
h = np.maximum(x_test @ W1 + b1, 0)
accuracy = float(np.mean((h @ W2 + b2).argmax(axis=1) == y_test))
print(f"test accuracy {accuracy:.4f}  training {trained:.2f} s  script {time.perf_counter() - began:.2f} s (after imports)")
