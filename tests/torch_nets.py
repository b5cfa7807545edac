"""Small PyTorch binary networks of the shapes users write, for the importer tests
(tests/test_from_torch.py, tests/test_from_onnx.py); imported as ``from torch_nets import ...``.

Each builder returns ``(module in eval mode, input shape as PyTorch takes it, input dtype)``.
Binarizations vary on purpose: a custom straight-through ``autograd.Function``,
``torch.where(x >= 0, 1, -1)``, ``torch.where(x < 0, -1, 1)``, ``torch.sign`` on weights.
Batch-norm statistics come from a pass over random data, so that signs are balanced.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class SignSTE(torch.autograd.Function):
    """BinaryNet's sign: +1 at 0, straight-through gradient."""

    @staticmethod
    def forward(ctx, x):
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


class Sign(nn.Module):
    def forward(self, x):
        return SignSTE.apply(x)


class WhereSign(nn.Module):
    def forward(self, x):
        return torch.where(x < 0, -1.0, 1.0)


class BinaryConv2d(nn.Conv2d):
    """sign(weight) through the straight-through estimator."""

    def forward(self, x):
        return F.conv2d(x, SignSTE.apply(self.weight), self.bias, self.stride, self.padding)


class SignConv2d(nn.Conv2d):
    """torch.sign(weight): no weight is exactly 0 after initialisation."""

    def forward(self, x):
        return self._conv_forward(x, torch.sign(self.weight), self.bias)


class BinaryLinear(nn.Linear):
    def forward(self, x):
        return F.linear(x, SignSTE.apply(self.weight), self.bias)


def _calibrated(module: nn.Module, shape: tuple, pixels: bool, seed: int) -> nn.Module:
    """``module`` with batch-norm statistics of random inputs, in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.momentum = None  # a plain average over the calibration pass
            if m.affine:
                with torch.no_grad():
                    m.weight.uniform_(0.5, 1.5).mul_(torch.where(torch.rand(m.num_features, generator=gen) < 0.2, -1, 1))
                    m.bias.normal_(0, 0.3, generator=gen)
    x = random_input(shape, pixels, 256, seed)
    module.train()
    with torch.no_grad():
        module(x)
    return module.eval()


def random_input(shape: tuple, pixels: bool, batch: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + 1)
    if pixels:
        return torch.randint(0, 256, (batch,) + shape, generator=gen).float()
    return torch.randn((batch,) + shape, generator=gen)


def mlp():
    """Flat uint8 pixels -> binary dense layers -> float dense."""
    net = nn.Sequential(
        BinaryLinear(784, 96, bias=False), nn.BatchNorm1d(96), Sign(),
        BinaryLinear(96, 64, bias=True), nn.BatchNorm1d(64), WhereSign(),
        nn.Linear(64, 10))
    return _calibrated(net, (784,), True, 1), (784,), "uint8"


class StridedCNN(nn.Module):
    """PyTorch's stride-2 padding=1 (TensorFlow's 'same' differs on even sizes), on pixels."""

    def __init__(self, size: int):
        super().__init__()
        self.c1 = BinaryConv2d(1, 16, 3, stride=2, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(16)
        self.c2 = BinaryConv2d(16, 24, 3, stride=2, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(24)
        side = (size + 1) // 2
        side = (side + 1) // 2
        self.fc = nn.Linear(24 * side * side, 10)

    def forward(self, x):
        x = SignSTE.apply(self.b1(self.c1(x)))
        x = torch.where(self.b2(self.c2(x)) >= 0, 1.0, -1.0)
        return self.fc(torch.flatten(x, 1))


def strided_cnn(size: int):
    return _calibrated(StridedCNN(size), (1, size, size), True, size), (1, size, size), "uint8"


class PaddedCNN(nn.Module):
    """Float input, a float first conv, padding=0 and padding=2 binary convs, a padded max-pool,
    torch.sign weights, a flatten after an explicit permute to NHWC."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 12, 3, padding=1)
        self.b1 = nn.BatchNorm2d(12)
        self.c2 = SignConv2d(12, 16, 3, padding=0, bias=False)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.b2 = nn.BatchNorm2d(16)
        self.c3 = BinaryConv2d(16, 20, 3, padding=2, bias=True)
        self.b3 = nn.BatchNorm2d(20, affine=False)
        self.fc = BinaryLinear(20 * 8 * 7, 32, bias=False)
        self.b4 = nn.BatchNorm1d(32)
        self.out = nn.Linear(32, 7)

    def forward(self, x):                                    # 3 x 13 x 11
        x = SignSTE.apply(self.b1(self.c1(x)))               # 13 x 11
        x = SignSTE.apply(self.b2(self.pool(self.c2(x))))    # 11 x 9 -> 6 x 5
        x = SignSTE.apply(self.b3(self.c3(x)))               # 8 x 7
        x = x.permute(0, 2, 3, 1).flatten(1)                 # NHWC order
        return self.out(SignSTE.apply(self.b4(self.fc(x))))


def padded_cnn():
    return _calibrated(PaddedCNN(), (3, 13, 11), False, 3), (3, 13, 11), "float32"


class PoolCNN(nn.Module):
    """28 x 28 pixels (real MNIST fits), padding=1 convs, a padded pool, an NCHW flatten."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            BinaryConv2d(1, 16, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(16), Sign(),
            BinaryConv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.MaxPool2d(3, 2, padding=1),
            nn.BatchNorm2d(32), Sign())
        self.head = nn.Sequential(nn.Flatten(), BinaryLinear(32 * 4 * 4, 48, bias=False), nn.BatchNorm1d(48),
                                  Sign(), nn.Linear(48, 10))

    def forward(self, x):
        return self.head(self.features(x))


def pool_cnn():
    return _calibrated(PoolCNN(), (1, 28, 28), True, 4), (1, 28, 28), "uint8"


# name -> builder: the networks every importer must import with 0 disagreements.
NETWORKS = {
    "mlp": mlp,
    "strided-cnn-even": lambda: strided_cnn(16),
    "strided-cnn-odd": lambda: strided_cnn(15),
    "padded-cnn-float-input": padded_cnn,
    "pool-cnn-28": pool_cnn,
}


def nhwc(x: torch.Tensor, dtype: str) -> np.ndarray:
    """A batch in the module's layout as the imported model takes it."""
    array = x.numpy()
    if array.ndim == 4:
        array = array.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(array.astype(np.uint8) if dtype == "uint8" else array)


def assert_same_function(net, model, x: torch.Tensor, dtype: str):
    """0 class disagreements with PyTorch itself, outputs equal to float32 rounding."""
    with torch.no_grad():
        theirs = net(x).numpy()
    np.testing.assert_array_equal(model.predict_classes(nhwc(x, dtype)), theirs.argmax(1))
    np.testing.assert_allclose(model.predict(nhwc(x, dtype)), theirs, rtol=1e-4,
                               atol=1e-4 * (1 + np.abs(theirs).max()))
