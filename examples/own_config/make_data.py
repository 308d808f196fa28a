"""Write data/train.bin and data/val.bin: your tokenized corpus, nanoGPT style.

Here the "tokenizer" is bytes of a few standard-library modules stored as uint16 ids (any
tokenizer's ids work the same way: ``np.array(ids, dtype=np.uint16).tofile(path)``).
"""

import sysconfig
from pathlib import Path

import numpy as np

root = Path(sysconfig.get_paths()["stdlib"])
text = b"".join((root / name).read_bytes() for name in
                ("argparse.py", "typing.py", "inspect.py", "pathlib.py", "datetime.py",
                 "threading.py", "subprocess.py", "tarfile.py"))
ids = np.frombuffer(text, dtype=np.uint8).astype(np.uint16)  # (n,) token ids < 256
cut = int(len(ids) * 0.95)
out = Path("data")
out.mkdir(exist_ok=True)
ids[:cut].tofile(out / "train.bin")
ids[cut:].tofile(out / "val.bin")
print(f"wrote {cut:,} training and {len(ids) - cut:,} validation tokens to {out}/")
