"""release_memory hands freed heap pages back to the system and changes no number."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from mripkg import memory
from mripkg.attacks import kspace
from mripkg.attacks.kspace import kspace_attack
from mripkg.physics import equispaced_mask, fft2c

# A child process fills its heap with 64 KiB blocks (below glibc's mmap threshold), keeps the
# last one so the heap cannot shrink from the top, frees the rest and reports its resident
# memory (MiB) before and after release_memory.
CHILD = textwrap.dedent(
    """
    import ctypes, ctypes.util, json, resource
    from mripkg.memory import release_memory

    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(64 * 1024) for _ in range(2000)]  # 125 MiB
    for b in blocks:
        ctypes.memset(b, 1, 64 * 1024)
    for b in blocks[:-1]:
        libc.free(b)
    before = rss_mib()
    returned = release_memory()
    print(json.dumps({"before": before, "after": rss_mib(), "returned": returned}))
    """
)


@pytest.mark.skipif(not memory.trim_available(), reason="needs glibc's malloc_trim")
def test_release_memory_returns_freed_heap_pages() -> None:
    import json

    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    assert r["returned"] is True
    assert r["before"] - r["after"] > 60, r  # most of the 125 MiB freed goes back


def test_attack_releases_memory_per_batch_and_keeps_its_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The attack calls release_memory once per batch; without it the numbers are the same."""
    g = torch.Generator().manual_seed(5)
    img = torch.rand(3, 1, 32, 32, generator=g)
    k = fft2c(img.to(torch.complex64))
    mask = equispaced_mask(32)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Tanh())

    def model(y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return net(torch.fft.ifft2(y, norm="ortho").abs())

    calls: list[int] = []

    def counting() -> bool:
        calls.append(1)
        return memory.release_memory()

    def run() -> torch.Tensor:
        gen = torch.Generator().manual_seed(7)
        res = kspace_attack(
            model, k, mask, [0.02, 0.05], steps=3, batch_size=2, generator=gen, progress=False
        )
        return res.delta

    monkeypatch.setattr(kspace, "release_memory", counting)
    with_release = run()
    assert len(calls) == 3  # 6 (image, eps) pairs in batches of 2
    monkeypatch.setattr(kspace, "release_memory", lambda: False)
    assert torch.equal(run(), with_release)
