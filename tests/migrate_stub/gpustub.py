"""A stand-in for a GPU tensor where no GPU exists (tests of migrate's GPU-to-CPU move).

It mimics what migrate relies on in ``torch.Tensor``: a ``.device`` with a ``.type``,
``.cpu()`` returning a CPU copy, ``nbytes``; and, like a CUDA tensor, it refuses to be
unpickled as a GPU object on a host without one (``GPUSTUB_GPU`` unset).
"""

import os


class Device:
    def __init__(self, spec: str):
        self.type, _, index = spec.partition(":")
        self.index = int(index) if index else None

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"


def _rebuild(data: bytes, device: str) -> "FakeTensor":
    if device != "cpu" and not os.environ.get("GPUSTUB_GPU"):
        raise RuntimeError("Attempting to deserialize object on a CUDA device but no GPU is available")
    return FakeTensor(data, device)


class FakeTensor:
    def __init__(self, data: bytes, device: str = "cpu"):
        self.data = bytes(data)
        self.device = Device(device)

    def cpu(self) -> "FakeTensor":
        return FakeTensor(self.data, "cpu")

    @property
    def nbytes(self) -> int:
        return len(self.data)

    def __reduce__(self):
        return (_rebuild, (self.data, str(self.device)))
