"""``python -m flops_fit <command> [overrides]`` is the same as ``flops-fit``."""

from flops_fit.cli import main

if __name__ == "__main__":
    main()
