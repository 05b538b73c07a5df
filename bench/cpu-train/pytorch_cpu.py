#!/usr/bin/env python3
"""PyTorch CPU reference for bench/cpu-train: training samples/s of the same models.

Same models as models.ts (Keras defaults translated: 3x3 kernels, 'valid'/'same' padding,
batch norm momentum 0.01 / eps 1e-3 as Keras' 0.99 / 1e-3), Adam(lr=1e-3), softmax cross
entropy on random Fashion-MNIST-shaped batches, warm-up steps excluded, 2 threads by default.

  python3 bench/cpu-train/pytorch_cpu.py [--threads 2] [--models seed003,big,mlp]
      [--batches 32,128,512] [--steps 10] [--out bench/cpu-train/results-pytorch.json]
"""

import argparse
import json
import os
import platform
import statistics
import time

import torch
from torch import nn


def conv_bn_relu(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01), nn.ReLU()]


def seed003():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * 3 * 3, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def mid():
    return nn.Sequential(
        *conv_bn_relu(1, 16), *conv_bn_relu(16, 16), nn.MaxPool2d(2),
        *conv_bn_relu(16, 32), *conv_bn_relu(32, 32), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, 10),
    )


def big():
    return nn.Sequential(
        *conv_bn_relu(1, 32), *conv_bn_relu(32, 32), nn.MaxPool2d(2), nn.Dropout(0.25),
        *conv_bn_relu(32, 64), *conv_bn_relu(64, 64), nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.BatchNorm1d(256, eps=1e-3, momentum=0.01), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(256, 10),
    )


def mlp():
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 1200), nn.ReLU(), nn.Linear(1200, 1200), nn.ReLU(), nn.Linear(1200, 10),
    )


MODELS = {'seed003': seed003, 'mid': mid, 'big': big, 'mlp': mlp}


def measure(name, batch, steps, warmup):
    torch.manual_seed(0)
    model = MODELS[name]()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(batch, 1, 28, 28)
    y = torch.arange(batch) % 10

    def step():
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        loss.item()
        return (time.perf_counter() - start) * 1000

    for _ in range(warmup):
        step()
    step_ms = [step() for _ in range(steps)]
    return {
        'backend': f'pytorch-{torch.get_num_threads()}t',
        'threads': torch.get_num_threads(),
        'model': name,
        'batch': batch,
        'steps': steps,
        'stepMs': step_ms,
        'samplesPerSec': batch * 1000 / statistics.median(step_ms),
        'bestSamplesPerSec': batch * 1000 / min(step_ms),
        'status': 'ok',
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--models', default='seed003,big,mlp')
    parser.add_argument('--batches', default='32,128,512')
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--out', default='bench/cpu-train/results-pytorch.json')
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    results = []
    for name in args.models.split(','):
        for batch in [int(b) for b in args.batches.split(',')]:
            r = measure(name, batch, args.steps, args.warmup)
            results.append(r)
            print(f"{name:8s} b{batch:<4d} {r['samplesPerSec']:8.0f} samples/s (best {r['bestSamplesPerSec']:.0f})", flush=True)
    report = {
        'date': time.strftime('%Y-%m-%dT%H:%M:%S'),
        'machine': {
            'cpus': os.cpu_count(),
            'cpusUsable': len(os.sched_getaffinity(0)),
            'cpuModel': platform.processor() or platform.machine(),
            'loadavg': os.getloadavg(),
        },
        'torch': torch.__version__,
        'threads': args.threads,
        'results': results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(report, f, indent=2)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
