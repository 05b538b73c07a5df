"""PyTorch side of bench/gpu/train-step.ts: the same models, optimizer and batch sizes, timed the same
way (one warm-up run of the same length, then `steps` timed Adam steps on random data of
Fashion-MNIST's shape), so both columns come from one device run.

    python3 bench/gpu/pytorch_train_step.py [steps=20] [batches=128,1024] [models=teacher,mlp] [out.json]
"""
import json
import sys
import time

import torch
from torch import nn

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
batches = [int(b) for b in (sys.argv[2] if len(sys.argv) > 2 else "128,1024").split(",")]
models = (sys.argv[3] if len(sys.argv) > 3 else "teacher,mlp").split(",")
out = sys.argv[4] if len(sys.argv) > 4 else None
device = "cuda" if torch.cuda.is_available() else "cpu"


def teacher():
    # The "big" CNN of pipelines/fashion-mnist.yaml (871,530 parameters), NCHW.
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout, momentum=0.1), nn.ReLU()]

    return nn.Sequential(
        *block(1, 32), *block(32, 32), nn.MaxPool2d(2), nn.Dropout(0.25),
        *block(32, 64), *block(64, 64), nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Flatten(), nn.Linear(3136, 256), nn.BatchNorm1d(256, momentum=0.1), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(256, 10),
    )


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 1200), nn.ReLU(), nn.Linear(1200, 1200), nn.ReLU(), nn.Linear(1200, 10))


BUILD = {"teacher": teacher, "mlp": mlp}
rows = []
for name in models:
    for batch in batches:
        model = BUILD[name]().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nn.CrossEntropyLoss()
        x = torch.rand(batch, 1, 28, 28, device=device)
        y = torch.randint(0, 10, (batch,), device=device)

        def run(n):
            for _ in range(n):
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()
            if device == "cuda":
                torch.cuda.synchronize()
            return loss.item()

        run(steps)
        start = time.perf_counter()
        loss = run(steps)
        ms = (time.perf_counter() - start) * 1000 / steps
        rows.append({"model": name, "batch": batch, "variant": "pytorch", "msPerStep": ms, "samplesPerSec": batch * 1000 / ms, "loss": loss})
        print(f"{name:8s} {batch:6d}  pytorch  {ms:9.2f} ms/step  {batch * 1000 / ms:12,.0f} samples/s", flush=True)

print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0) if device == 'cuda' else 'cpu'}")
if out:
    with open(out, "w") as f:
        json.dump({"torch": torch.__version__, "device": device, "steps": steps, "rows": rows}, f, indent=2)
