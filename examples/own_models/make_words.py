"""Write data/train.bin and data/val.bin: word-level token ids of a small English-ish corpus.

The "tokenizer" splits text into words and punctuation and keeps the VOCAB - 1 most frequent
(id 0 is every other word); any tokenizer's ids work the same way:
``np.array(ids, dtype=np.uint16).tofile(path)``. The text is the standard library's own
source (docstrings and code, about 7M words), so nothing is downloaded. A small vocabulary
keeps the embedding, which every size of a depth-sized model carries, from dwarfing the
layers.
"""

import re
import sysconfig
from collections import Counter
from pathlib import Path

import numpy as np

VOCAB = 512  # conf/dataset/words.yaml's vocab_size

root = Path(sysconfig.get_paths()["stdlib"])
files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
text = "".join(p.read_text(encoding="utf-8", errors="replace") for p in files)
words = re.findall(r"\w+|[^\w\s]", text.lower())
vocab = {w: i + 1 for i, (w, _) in enumerate(Counter(words).most_common(VOCAB - 1))}
ids = np.array([vocab.get(w, 0) for w in words], dtype=np.uint16)
cut = int(len(ids) * 0.95)
out = Path("data")
out.mkdir(exist_ok=True)
ids[:cut].tofile(out / "train.bin")
ids[cut:].tofile(out / "val.bin")
print(f"wrote {cut:,} training and {len(ids) - cut:,} validation tokens (vocabulary "
      f"{VOCAB:,} words) to {out}/")
