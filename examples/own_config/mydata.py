"""Data of your own for ``dataset=custom``: a torch Dataset of (input, target) pairs.

``TokenWindows(path, seq_len)`` serves the windows of a nanoGPT-style token file: input
``ids[i : i + seq_len]``, target the same window shifted by one.
"""

import numpy as np
import torch
from torch.utils.data import Dataset


class TokenWindows(Dataset):
    def __init__(self, path: str, seq_len: int = 32, dtype: str = "uint16"):
        self.ids = np.memmap(path, dtype=dtype, mode="r")
        self.seq_len = seq_len

    def __len__(self) -> int:
        return (len(self.ids) - 1) // self.seq_len

    def __getitem__(self, i: int):
        window = self.ids[i * self.seq_len: (i + 1) * self.seq_len + 1]  # (seq_len + 1,)
        w = torch.from_numpy(window.astype(np.int64))
        return w[:-1], w[1:]  # (seq_len,), (seq_len,)
